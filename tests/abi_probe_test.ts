// Checks every size, offset and constant in ffi/abi.ts and ffi/libc.ts against the C headers:
// the C probe is generated from the exported objects themselves, compiled with `cc` against
// <liburing.h>, <linux/fs.h>, <linux/falloc.h>, <fcntl.h> and <sys/stat.h>, and run. A constant
// added to an existing table in ffi/ (or a new IORING_ number) is checked without touching this
// file; a new table or camelCase field needs one line here, and the last test says which.
import assert from "node:assert/strict";
import * as abi from "../ffi/abi.ts";
import * as libc from "../ffi/libc.ts";

const HEADER = "/usr/include/liburing.h";

/** Exported layout tables: export name -> the C struct its offsets describe. */
const LAYOUTS: Record<string, string> = {
  SQE: "struct io_uring_sqe",
  CQE: "struct io_uring_cqe",
  RING: "struct io_uring",
  PARAMS: "struct io_uring_params",
  STAT: "struct stat",
};
/** Exported constant tables: export name -> the prefix of the C macros or enumerators. */
const PREFIXES: Record<string, string> = {
  Op: "IORING_OP_",
  SqeFlag: "IOSQE_",
  SetupFlag: "IORING_SETUP_",
  Feature: "IORING_FEAT_",
  Falloc: "FALLOC_FL_",
  O: "O_",
  Ioctl: "",
  S: "S_",
  MADV: "MADV_",
  PROT: "PROT_",
  MAP: "MAP_",
};
/** Exported `*_SIZE` numbers -> the C type they are the size of. */
const SIZES: Record<string, string> = {
  SQE_SIZE: "struct io_uring_sqe",
  CQE_SIZE: "struct io_uring_cqe",
  PARAMS_SIZE: "struct io_uring_params",
  TIMESPEC_SIZE: "struct __kernel_timespec",
  IOVEC_SIZE: "struct iovec",
};
/** Other exported numbers: the C name, when it is not simply `IORING_` + the export name. */
const SCALARS: Record<string, string> = {};
/** Our camelCase field names -> the C member names (lowercase names are the same in C). */
const FIELDS: Record<string, string> = {
  "SQE.opFlags": "rw_flags",
  "SQE.userData": "user_data",
  "SQE.bufIndex": "buf_index",
  "SQE.fileIndex": "file_index",
  "SQE.pad2": "__pad2",
  "CQE.userData": "user_data",
  "RING.kringMask": "kring_mask",
  "RING.kringEntries": "kring_entries",
  "RING.sqeHead": "sqe_head",
  "RING.sqeTail": "sqe_tail",
  "RING.ringSz": "ring_sz",
  "RING.ringPtr": "ring_ptr",
  "RING.ringMask": "ring_mask",
  "RING.ringEntries": "ring_entries",
  "RING.ringFd": "ring_fd",
  "RING.enterRingFd": "enter_ring_fd",
  "RING.intFlags": "int_flags",
  "PARAMS.sqEntries": "sq_entries",
  "PARAMS.cqEntries": "cq_entries",
  "STAT.stSize": "st_size",
};
/** C member names that differ from ours only by a prefix every member has. */
const MEMBER_PREFIX: Record<string, string> = { STAT: "st_" };

/** One value to compare: where it is in our tables, our value, and the C expression for it. */
interface Check {
  group: string;
  name: string;
  ours: number | bigint;
  c: string;
}

/** Every check, plus the exports or fields that have no obvious C counterpart. */
function plan(): { checks: Check[]; unmapped: string[] } {
  const checks: Check[] = [];
  const unmapped: string[] = [];
  const exports = [["ffi/abi.ts", abi], ["ffi/libc.ts", libc]] as const;
  for (const [file, mod] of exports) {
    for (const [name, value] of Object.entries(mod)) {
      if (typeof value === "function") continue;
      const add = (c: string, ours: unknown, at = name) => {
        if (typeof ours !== "number" && typeof ours !== "bigint") {
          unmapped.push(`${file}: ${at} is neither a number nor a table of numbers`);
          return;
        }
        checks.push({ group: name, name: at, ours, c });
      };
      if (typeof value === "number" || typeof value === "bigint") {
        if (name in SIZES) add(`sizeof(${SIZES[name]})`, value);
        else if (name.endsWith("_SIZE")) unmapped.push(`${file}: ${name} (add it to SIZES)`);
        else add(SCALARS[name] ?? `IORING_${name}`, value);
      } else if (name in PREFIXES) {
        for (const [k, v] of Object.entries(value)) add(`${PREFIXES[name]}${k}`, v, `${name}.${k}`);
      } else if (name in LAYOUTS) {
        const walk = (table: object, path: string[]) => {
          for (const [k, v] of Object.entries(table)) {
            const at = [name, ...path, k].join(".");
            if (path.length === 0 && k === "size") {
              add(`sizeof(${LAYOUTS[name]})`, v, at);
            } else if (typeof v === "object" && v !== null) {
              walk(v, [...path, k]);
            } else if (/[A-Z]/.test(k) && !(`${name}.${k}` in FIELDS)) {
              unmapped.push(`${file}: ${at} (add "${name}.${k}" to FIELDS)`);
            } else {
              const member = FIELDS[`${name}.${k}`] ?? `${MEMBER_PREFIX[name] ?? ""}${k}`;
              add(`offsetof(${LAYOUTS[name]}, ${[...path, member].join(".")})`, v, at);
            }
          }
        };
        walk(value, []);
      } else {
        unmapped.push(`${file}: ${name} (add it to LAYOUTS or PREFIXES)`);
      }
    }
  }
  return { checks, unmapped };
}

/** True when `cmd --version` runs and succeeds (spawning throws when `cmd` is not on PATH). */
async function runs(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

const hasHeader = await Deno.stat(HEADER).then((s) => s.isFile, () => false);
const skipReason = !(await runs("cc"))
  ? "no C compiler (cc); apt-get install gcc"
  : !hasHeader
  ? `no liburing headers (${HEADER}); apt-get install liburing-dev`
  : "";
if (skipReason) console.log(`abi_probe_test.ts: skipping the C offsetof probe: ${skipReason}`);

const PROLOGUE = [
  "#define _GNU_SOURCE",
  "#include <stdio.h>",
  "#include <stddef.h>",
  "#include <fcntl.h>",
  "#include <sys/stat.h>",
  "#include <sys/mman.h>",
  "#include <sys/uio.h>",
  "#include <linux/fs.h>",
  "#include <linux/falloc.h>",
  "#include <liburing.h>",
  "int main(void) {",
];

/** The generated C program: prints "name value" for every check, one check per line. */
function probeSource(checks: Check[]): string {
  return [
    ...PROLOGUE,
    ...checks.map(({ name, c }) =>
      `  printf("%s %llu\\n", ${JSON.stringify(name)}, (unsigned long long)(${c}));`
    ),
    "  return 0;",
    "}",
    "",
  ].join("\n");
}

/** What the headers say: the value of each check by name, and the names C does not know. */
interface Probed {
  values: Map<string, bigint>;
  unknown: Map<string, string>;
}

let probed: Promise<Probed> | undefined;

/**
 * Compiles and runs the probe once. A line cc rejects (a name the headers do not have) is
 * dropped and remembered with cc's message, so one unknown name fails only its own test.
 */
function probe(): Promise<Probed> {
  probed ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "kcopyd-abi-" });
    const unknown = new Map<string, string>();
    try {
      let checks = allChecks;
      for (;;) {
        await Deno.writeTextFile(`${dir}/probe.c`, probeSource(checks));
        const cc = await new Deno.Command("cc", {
          args: ["-std=gnu11", "-o", `${dir}/probe`, `${dir}/probe.c`],
          stderr: "piped",
        }).output();
        if (cc.success) break;
        const stderr = new TextDecoder().decode(cc.stderr);
        const bad = new Map<number, string>();
        for (const m of stderr.matchAll(/probe\.c:(\d+):\d+: error: (.*)/g)) {
          const i = Number(m[1]) - 1 - PROLOGUE.length;
          if (i >= 0 && i < checks.length && !bad.has(i)) bad.set(i, m[2]);
        }
        assert.ok(bad.size > 0, `cc fails on the generated probe:\n${stderr}`);
        for (const [i, why] of bad) unknown.set(checks[i].name, why);
        checks = checks.filter((_, i) => !bad.has(i));
      }
      const run = await new Deno.Command(`${dir}/probe`, { stdout: "piped" }).output();
      assert.ok(run.success, "the compiled probe exits with status 0");
      const lines = new TextDecoder().decode(run.stdout).trim().split("\n");
      const values = new Map(
        lines.filter((l) => l).map((line) => {
          const [name, value] = line.split(" ");
          return [name, BigInt(value)] as const;
        }),
      );
      return { values, unknown };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  return probed;
}

/** Asserts that C agrees with us on every check of the given export groups. */
async function expectMatch(checks: Check[]): Promise<void> {
  const { values, unknown } = await probe();
  const fromC: Record<string, string> = {};
  const ours: Record<string, string> = {};
  for (const { name, ours: v, c } of checks) {
    fromC[`${name} = ${c}`] = unknown.has(name)
      ? `not in the headers (cc: ${unknown.get(name)})`
      : String(values.get(name));
    ours[`${name} = ${c}`] = String(v);
  }
  assert.deepEqual(fromC, ours, "C's values (actual) against ours (expected)");
}

/** One test per family of values; anything exported later lands in the last one. */
const TESTS: [string, string[]][] = [
  [
    "ffi/abi.ts SQE and CQE sizes and offsets match linux/io_uring.h (C offsetof probe)",
    ["SQE_SIZE", "CQE_SIZE", "SQE", "CQE"],
  ],
  ["ffi/abi.ts offsets match liburing's struct io_uring (C offsetof probe)", ["RING"]],
  [
    "ffi/abi.ts struct io_uring_params, __kernel_timespec and iovec layouts match the headers",
    ["PARAMS_SIZE", "PARAMS", "TIMESPEC_SIZE", "IOVEC_SIZE"],
  ],
  [
    "ffi/abi.ts opcodes and flags match linux/io_uring.h and linux/falloc.h",
    [
      "Op",
      "SqeFlag",
      "SetupFlag",
      "Feature",
      "FSYNC_DATASYNC",
      "ASYNC_CANCEL_ANY",
      "ASYNC_CANCEL_ALL",
      "Falloc",
    ],
  ],
  [
    "ffi/libc.ts O_ flags, block device ioctls, struct stat offsets and S_ bits match glibc",
    ["O", "Ioctl", "STAT", "S"],
  ],
];

const { checks: allChecks, unmapped } = plan();
const named = new Set(TESTS.flatMap(([, groups]) => groups));
for (const [name, groups] of TESTS) {
  const checks = allChecks.filter((c) => groups.includes(c.group));
  Deno.test({ name, ignore: skipReason !== "", fn: () => expectMatch(checks) });
}
const rest = allChecks.filter((c) => !named.has(c.group));
if (rest.length > 0) {
  Deno.test({
    name: `ffi/ constants outside the families above match the headers (${
      [...new Set(rest.map((c) => c.group))].join(", ")
    })`,
    ignore: skipReason !== "",
    fn: () => expectMatch(rest),
  });
}

Deno.test("every number exported by ffi/abi.ts and ffi/libc.ts has a C counterpart in the probe", () => {
  assert.deepEqual(unmapped, [], "exports the probe cannot map to C");
});
