// Checks every offset and constant in ffi/ against the C headers with a compiled offsetof probe.
import assert from "node:assert/strict";
import {
  ASYNC_CANCEL_ALL,
  ASYNC_CANCEL_ANY,
  CQE,
  CQE_SIZE,
  Falloc,
  Feature,
  FSYNC_DATASYNC,
  IOVEC_SIZE,
  Op,
  PARAMS,
  PARAMS_SIZE,
  RING,
  SetupFlag,
  SQE,
  SQE_SIZE,
  SqeFlag,
  TIMESPEC_SIZE,
} from "../ffi/abi.ts";
import { Ioctl, O, S, STAT } from "../ffi/libc.ts";

const HEADER = "/usr/include/liburing.h";

async function has(cmd: string): Promise<boolean> {
  return await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
    .output().then((o) => o.success, () => false);
}
const hasHeader = await Deno.stat(HEADER).then(() => true, () => false);
const reason = !(await has("cc"))
  ? "needs a C compiler (cc)"
  : !hasHeader
  ? `needs the liburing headers (${HEADER}, apt-get install liburing-dev)`
  : "";
if (reason) console.log(`skipping the C offsetof probe: ${reason}`);

const camelToC: Record<string, string> = {
  opFlags: "rw_flags",
  userData: "user_data",
  bufIndex: "buf_index",
  fileIndex: "file_index",
  pad2: "__pad2",
  kringMask: "kring_mask",
  kringEntries: "kring_entries",
  sqeHead: "sqe_head",
  sqeTail: "sqe_tail",
  ringSz: "ring_sz",
  ringPtr: "ring_ptr",
  ringMask: "ring_mask",
  ringEntries: "ring_entries",
  ringFd: "ring_fd",
  enterRingFd: "enter_ring_fd",
  intFlags: "int_flags",
  sqEntries: "sq_entries",
  cqEntries: "cq_entries",
  stSize: "st_size",
};
const cName = (k: string) => camelToC[k] ?? k;

/** [name in our tables, our value, C expression] */
function checks(): [string, number | bigint, string][] {
  const out: [string, number | bigint, string][] = [
    ["SQE_SIZE", SQE_SIZE, "sizeof(struct io_uring_sqe)"],
    ["CQE_SIZE", CQE_SIZE, "sizeof(struct io_uring_cqe)"],
    ["RING.size", RING.size, "sizeof(struct io_uring)"],
    ["PARAMS_SIZE", PARAMS_SIZE, "sizeof(struct io_uring_params)"],
    ["TIMESPEC_SIZE", TIMESPEC_SIZE, "sizeof(struct __kernel_timespec)"],
    ["IOVEC_SIZE", IOVEC_SIZE, "sizeof(struct iovec)"],
    ["STAT.size", STAT.size, "sizeof(struct stat)"],
    ["FSYNC_DATASYNC", FSYNC_DATASYNC, "IORING_FSYNC_DATASYNC"],
    ["ASYNC_CANCEL_ANY", ASYNC_CANCEL_ANY, "IORING_ASYNC_CANCEL_ANY"],
    ["ASYNC_CANCEL_ALL", ASYNC_CANCEL_ALL, "IORING_ASYNC_CANCEL_ALL"],
  ];
  for (const [k, v] of Object.entries(SQE)) {
    out.push([`SQE.${k}`, v, `offsetof(struct io_uring_sqe, ${cName(k)})`]);
  }
  for (const [k, v] of Object.entries(CQE)) {
    out.push([`CQE.${k}`, v, `offsetof(struct io_uring_cqe, ${cName(k)})`]);
  }
  for (const q of ["sq", "cq"] as const) {
    for (const [k, v] of Object.entries(RING[q])) {
      out.push([`RING.${q}.${k}`, v, `offsetof(struct io_uring, ${q}.${cName(k)})`]);
    }
  }
  for (const k of ["flags", "ringFd", "features", "enterRingFd", "intFlags"] as const) {
    out.push([`RING.${k}`, RING[k], `offsetof(struct io_uring, ${cName(k)})`]);
  }
  for (const [k, v] of Object.entries(PARAMS)) {
    out.push([`PARAMS.${k}`, v, `offsetof(struct io_uring_params, ${cName(k)})`]);
  }
  for (const [k, v] of Object.entries(Op)) out.push([`Op.${k}`, v, `IORING_OP_${k}`]);
  for (const [k, v] of Object.entries(SqeFlag)) out.push([`SqeFlag.${k}`, v, `IOSQE_${k}`]);
  for (const [k, v] of Object.entries(SetupFlag)) {
    out.push([`SetupFlag.${k}`, v, `IORING_SETUP_${k}`]);
  }
  for (const [k, v] of Object.entries(Feature)) out.push([`Feature.${k}`, v, `IORING_FEAT_${k}`]);
  for (const [k, v] of Object.entries(Falloc)) out.push([`Falloc.${k}`, v, `FALLOC_FL_${k}`]);
  for (const [k, v] of Object.entries(O)) out.push([`O.${k}`, v, `O_${k}`]);
  for (const [k, v] of Object.entries(Ioctl)) out.push([`Ioctl.${k}`, v, k]);
  for (const [k, v] of Object.entries(STAT)) {
    if (k !== "size") {
      out.push([`STAT.${k}`, v, `offsetof(struct stat, st_${k === "stSize" ? "size" : k})`]);
    }
  }
  for (const [k, v] of Object.entries(S)) out.push([`S.${k}`, v, `S_${k}`]);
  return out;
}

Deno.test({
  name: "ffi/ offsets and constants match liburing's and libc's headers (C offsetof probe)",
  ignore: reason !== "",
  async fn() {
    const list = checks();
    const c = [
      "#define _GNU_SOURCE",
      "#include <stdio.h>",
      "#include <stddef.h>",
      "#include <fcntl.h>",
      "#include <sys/stat.h>",
      "#include <sys/uio.h>",
      "#include <linux/fs.h>",
      "#include <linux/falloc.h>",
      "#include <liburing.h>",
      "int main(void) {",
      ...list.map(([name, , expr]) =>
        `  printf("%s %llu\\n", ${JSON.stringify(name)}, (unsigned long long)(${expr}));`
      ),
      "  return 0;",
      "}",
    ].join("\n");
    const dir = await Deno.makeTempDir({ prefix: "kcopyd-abi-" });
    try {
      await Deno.writeTextFile(`${dir}/probe.c`, c);
      const cc = await new Deno.Command("cc", {
        args: ["-o", `${dir}/probe`, `${dir}/probe.c`],
        stderr: "piped",
      }).output();
      assert.ok(cc.success, new TextDecoder().decode(cc.stderr));
      const run = await new Deno.Command(`${dir}/probe`, { stdout: "piped" }).output();
      assert.ok(run.success);
      const got = new Map(
        new TextDecoder().decode(run.stdout).trim().split("\n").map((l) => {
          const [k, v] = l.split(" ");
          return [k, BigInt(v)];
        }),
      );
      assert.equal(got.size, list.length);
      const wrong = list.filter(([name, ours]) => got.get(name) !== BigInt(ours))
        .map(([name, ours]) => `${name}: ours ${ours}, C ${got.get(name)}`);
      assert.deepEqual(wrong, [], "every value matches the headers");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
