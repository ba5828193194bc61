// The kcopyd command end to end, as a subprocess, on real files and loop devices.
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { openDevice } from "../mod.ts";
import { makeImage, readRange, sha256, sha256File } from "./support/image.ts";
import { attachLoop, canUseLoop, loopImage } from "./support/loop.ts";
import { canUseFaults, faultDevice } from "./support/fault_device.ts";
import { canUseNbdkit, startNbdkit } from "./support/nbd_server.ts";
import { hasCommand, run, waitFor } from "./support/run.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CLI = `${ROOT}cli.ts`;
const loops = await canUseLoop();
if (!loops.ok) console.log(`skipping CLI loop-device tests: ${loops.reason}`);
const faults = await canUseFaults();
if (!faults.ok) console.log(`skipping CLI fault tests: ${faults.reason}`);
const nbd = await canUseNbdkit();
if (!nbd.ok) console.log(`skipping the CLI NBD test: ${nbd.reason}`);
const hasScript = await hasCommand("script");
if (!hasScript) console.log("skipping the pseudo-terminal test: script (bsdutils) is missing");
const hasCc = Deno.build.arch === "x86_64" && await hasCommand("cc");
if (!hasCc) console.log("skipping the blocked io_uring test: needs cc on x86_64");
const hasMkfs = loops.ok && await hasCommand("mkfs.ext4") && await hasCommand("mount");
if (loops.ok && !hasMkfs) {
  console.log("skipping the mounted-device test: mkfs.ext4 or mount missing");
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function kcopyd(...args: string[]): Promise<Result> {
  return await kcopydEnv({}, ...args);
}

async function kcopydEnv(env: Record<string, string>, ...args: string[]): Promise<Result> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A temp dir removed on dispose. */
async function tempDir() {
  const path = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "kcopyd-cli-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

async function image(dir: string, name: string, bytes: number, fill?: number, seed = 1) {
  const p = `${dir}/${name}`;
  const tmp = await makeImage(bytes, fill === undefined ? { seed, dir } : { byte: fill, dir });
  await Deno.rename(tmp, p);
  return p;
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** Exit 2, one `kcopyd: error:` line matching `message`, no stack trace. */
function refused(r: Result, message: RegExp, what: string): void {
  assert.equal(r.code, 2, `${what}: exit ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /^kcopyd: error: [^\n]+\n$/, `${what}: one line`);
  assert.match(r.stderr, message, what);
  assert.equal(r.stdout, "", `${what}: nothing on stdout`);
}

const COPY_KEYS = ["bytes", "bytesPerSecond", "errors", "readErr", "seconds", "writeErr"];

Deno.test("--help lists commands, region syntax, units and options; --version prints it", async () => {
  const h = await kcopyd("--help");
  assert.equal(h.code, 0);
  assert.equal(h.stderr, "");
  for (
    const word of [
      "copy",
      "zero",
      "verify",
      "info",
      "SECTOR[+COUNT]",
      "512-byte sectors",
      "KiB",
      "KB",
      "TiB",
      "--ignore-errors",
      "--write-seq",
      "--flush",
      "--verify",
      "--throttle PERCENT",
      "--rate BYTES/s",
      "--sub-job-size SIZE",
      "--memory SIZE",
      "--json",
      "--quiet",
      "--force",
      "--help",
      "--version",
    ]
  ) {
    assert.ok(h.stdout.includes(word), `help mentions ${word}`);
  }
  const version = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).version;
  for (const flag of ["--version", "-V"]) {
    const v = await kcopyd(flag);
    assert.equal(v.code, 0);
    assert.equal(v.stdout, `kcopyd ${version}\n`);
  }
});

Deno.test("bad usage exits 2 with one line naming the culprit and no stack trace", async () => {
  const cases: [string[], RegExp][] = [
    [[], /no command given/],
    [["frob"], /unknown command "frob"/],
    [["copy", "--bogus"], /--bogus/],
    [["copy", "/x"], /copy needs a source and at least one destination/],
    [["zero"], /zero needs at least one destination/],
    [["verify", "/x"], /verify needs a source/],
    [["info"], /info needs at least one path/],
    [["copy", "a", "b", "--throttle", "0"], /--throttle: "0" is not a percentage/],
    [["copy", "a", "b", "--throttle", "101"], /--throttle: "101"/],
    [["copy", "a", "b", "--rate", "0"], /--rate: "0" must be more than 0/],
    [["copy", "a", "b", "--rate", "fast"], /--rate: "fast" is not a size/],
    [["copy", "a", "b", "--sub-job-size", "1000"], /--sub-job-size: "1000" must be a multiple/],
    [["copy", "a", "b", "--memory", "1x"], /--memory: unknown unit "x"/],
    [["zero", "a:0+8", "--verify"], /--verify .* does not apply to zero/],
  ];
  for (const [args, message] of cases) refused(await kcopyd(...args), message, args.join(" "));
});

Deno.test("copy to a new file and an existing one; --json checked field by field", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 3 << 20, undefined, 5);
  const existing = await image(d.path, "existing.img", 4 << 20, 0xee);
  const created = `${d.path}/new.img`;
  let r = await kcopyd("copy", `${src}:8+2MiB`, `${existing}:2048`, created, "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "", "no progress bar and no summary line when stderr is not a terminal");
  const j = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(j).sort(), COPY_KEYS);
  assert.equal(j.bytes, 2 << 20, "source bytes, not multiplied by destinations");
  assert.equal(typeof j.seconds, "number");
  assert.ok(j.seconds > 0);
  assert.ok(Math.abs(j.bytesPerSecond - j.bytes / j.seconds) <= j.bytesPerSecond * 0.01 + 1);
  assert.equal(j.readErr, false);
  assert.equal(j.writeErr, 0);
  assert.deepEqual(j.errors, []);
  const want = sha256(await readRange(src, 8 * 512, 2 << 20));
  assert.equal(await sha256File(existing, 2048 * 512, 2 << 20), want);
  assert.equal((await Deno.stat(created)).size, 2 << 20, "created at the needed size");
  assert.equal(await sha256File(created), want);
  assert.ok((await readRange(existing, 0, 2048 * 512)).every((b) => b === 0xee), "before: kept");
  assert.ok((await readRange(existing, 3 << 20, 1 << 20)).every((b) => b === 0xee), "after: kept");

  // --verify adds "verified"; a created file with a start sector is made large enough.
  r = await kcopyd("copy", `${src}:0+64`, `${d.path}/offset.img:100`, "--verify", "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(Object.keys(JSON.parse(r.stdout)).sort(), [...COPY_KEYS, "verified"].sort());
  assert.equal(JSON.parse(r.stdout).verified, true);
  assert.equal((await Deno.stat(`${d.path}/offset.img`)).size, 164 * 512);

  // Without --json and without a terminal: one summary line on stderr, nothing on stdout.
  r = await kcopyd("copy", `${src}:0+64`, `${d.path}/offset.img:100`, "--verify");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "");
  assert.match(
    r.stderr,
    /^kcopyd: 32\.0 KiB copied to 1 destination\(s\) in .* s \(.*\/s\), verified\n$/,
  );
  // --quiet: nothing at all on success.
  r = await kcopyd("copy", `${src}:0+64`, `${d.path}/offset.img:100`, "--quiet");
  assert.deepEqual([r.code, r.stdout, r.stderr], [0, "", ""]);
});

Deno.test("units: K is 1024, KB is 1000, plain numbers are sectors; sizes must be whole sectors", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 1 << 20, undefined, 6);
  const dst = await image(d.path, "dst.img", 1 << 20, 0);
  let r = await kcopyd("copy", `${src}:1K+512K`, `${dst}:4`, "-q", "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).bytes, 524288);
  assert.equal(await sha256File(dst, 2048, 524288), await sha256File(src, 1024, 524288));
  refused(
    await kcopyd("copy", `${src}:0+4KB`, dst),
    /"4KB" is 4000 bytes, not a whole number of 512-byte sectors/,
    "4KB",
  );
  r = await kcopyd("copy", `${src}:0+1024KB`, dst, "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).bytes, 1024000);
  r = await kcopyd("copy", `${src}:0+16`, `${dst}:100`, "--json");
  assert.equal(JSON.parse(r.stdout).bytes, 16 * 512);
  r = await kcopyd("copy", `${src}:1MiB`, `${dst}:0`, "--json");
  assert.equal(r.code, 2, "1 MiB from the start of a 1 MiB source is empty");
  r = await kcopyd("copy", `${src}:2048B+0.5K`, dst);
  assert.equal(r.code, 2);
});

Deno.test("verify reports the first differing sector and the count; exit 1 when anything differs", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 1 << 20, undefined, 7);
  const a = `${d.path}/a.img`;
  const b = `${d.path}/b.img`;
  assert.equal((await kcopyd("copy", src, a, `${b}:16`, "--quiet", "--verify")).code, 0);
  let v = await kcopyd("verify", src, a, `${b}:16`);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.equal(
    v.stdout,
    `dest 0 "${a}": equal (2048 sectors)\ndest 1 "${b}:16": equal (2048 sectors)\n`,
  );
  // Damage sectors 100..102 of b's copy (absolute 116..118 on b).
  using f = await Deno.open(b, { write: true });
  await f.seek(116 * 512, Deno.SeekMode.Start);
  await f.write(new Uint8Array(3 * 512).fill(0x42));
  v = await kcopyd("verify", src, a, `${b}:16`, "--json");
  assert.equal(v.code, 1);
  const j = JSON.parse(v.stdout);
  assert.deepEqual(Object.keys(j).sort(), ["bytes", "dests", "equal", "seconds"]);
  assert.equal(j.equal, false);
  assert.equal(j.bytes, 1 << 20);
  assert.deepEqual(j.dests, [
    { path: a, sector: 0, equal: true, firstDiffSector: null, diffSectors: 0 },
    { path: b, sector: 16, equal: false, firstDiffSector: 116, diffSectors: 3 },
  ]);
  v = await kcopyd("verify", src, `${b}:16`);
  assert.equal(v.code, 1);
  assert.match(v.stdout, /first differing sector 116, 3 of 2048 sectors differ/);
  refused(
    await kcopyd("verify", src, `${d.path}/none.img`),
    /"[^"]*none.img" does not exist/,
    "none",
  );
});

Deno.test("zero takes a region per destination; no count means to the end of that device", async () => {
  await using d = await tempDir();
  const a = await image(d.path, "a.img", 1 << 20, 0xff);
  const b = await image(d.path, "b.img", 1 << 20, 0xff);
  const r = await kcopyd("zero", `${a}:8+16`, `${b}:2000`, "--json", "--flush");
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(j).sort(), COPY_KEYS);
  assert.equal(j.bytes, (16 + 48) * 512, "bytes zeroed over all destinations");
  assert.deepEqual([j.readErr, j.writeErr, j.errors], [false, 0, []]);
  const A = await Deno.readFile(a);
  const B = await Deno.readFile(b);
  assert.ok(A.subarray(8 * 512, 24 * 512).every((x) => x === 0));
  assert.ok(A.subarray(0, 8 * 512).every((x) => x === 0xff));
  assert.ok(A.subarray(24 * 512).every((x) => x === 0xff));
  assert.ok(B.subarray(2000 * 512).every((x) => x === 0));
  assert.ok(B.subarray(0, 2000 * 512).every((x) => x === 0xff));
  // A missing destination is created when it has a count, refused without one.
  const c = `${d.path}/c.img`;
  assert.equal((await kcopyd("zero", `${c}:8+8`, "-q")).code, 0);
  assert.equal((await Deno.stat(c)).size, 16 * 512);
  refused(await kcopyd("zero", `${d.path}/none.img`), /"[^"]*none.img" does not exist/, "none");
});

Deno.test("refusals exit 2, name the culprit, create nothing and leave the destination unchanged", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 1 << 20, undefined, 8);
  const small = await image(d.path, "small.img", 64 << 10, 0x77);
  const ro = await image(d.path, "ro.img", 1 << 20, 0x66);
  await Deno.chmod(ro, 0o444);
  await Deno.symlink(src, `${d.path}/link.img`);
  const n = `${d.path}/new.img`;
  const many = Array.from({ length: 33 }, (_, i) => `${d.path}/m${i}.img`);
  const cases: [string[], RegExp][] = [
    [["copy", src, small], /"[^"]*small.img" is too small: sector 0 \+ 2048 > 128 sectors/],
    [["copy", src, `${small}:100`, n], /small.img" is too small: sector 100 \+ 2048 > 128/],
    [
      ["copy", `${src}:0+64`, `${d.path}/link.img:32`],
      /overlaps the source .*sectors 32\+64 and 0\+64/,
    ],
    [["copy", `${src}:0+64`, `${src}:63`], /overlaps the source/],
    [["copy", `${src}:0+8`, `${small}`, `${small}:4`], /Destinations .* overlap on the same file/],
    [["copy", `${src}:0+8`, n, `${d.path}/./new.img`], /is given twice/],
    [["copy", `${d.path}/missing.img`, small], /Source "[^"]*missing.img" does not exist/],
    [["copy", d.path, n], /Cannot open "[^"]+" for reading: it is a directory/],
    [["copy", src, d.path], /Destination "[^"]+" is a directory/],
    [["copy", `${src}:0+8`, ro], /Destination "[^"]*ro.img" is read-only \(mode 444\)/],
    [["zero", `${ro}:0+8`], /read-only/],
    [["copy", `${src}:0+9999999`, n], /Source range exceeds "[^"]*src.img"/],
    [["copy", `${src}:0+100B`, n], /"100B" is 100 bytes, not a whole number of 512-byte sectors/],
    [["copy", `${src}:0+8`, `${n}:0+16`], /count 16 differs from the source's 8 sectors/],
    [["copy", `${src}:0+8`, n, `${d.path}/no/such/dir/x.img`], /folder "[^"]*no\/such\/dir"/],
    [["copy", `${src}:0+8`, ...many], /Too many destinations: 33 \(at most 32/],
    [["verify", src, small], /smaller than the range/],
  ];
  const before = [await sha256File(small), await sha256File(ro), await sha256File(src)];
  for (const [args, message] of cases) refused(await kcopyd(...args), message, args.join(" "));
  assert.deepEqual(
    [await sha256File(small), await sha256File(ro), await sha256File(src)],
    before,
    "nothing was written",
  );
  for (const p of [n, `${d.path}/missing.img`, ...many]) {
    assert.ok(!(await exists(p)), `${p} was not created`);
  }
  // Disjoint ranges of one file are fine, also through a symlink.
  const ok = await kcopyd("copy", `${src}:0+64`, `${d.path}/link.img:64`, "-q");
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await sha256File(src, 64 * 512, 64 * 512), await sha256File(src, 0, 64 * 512));
});

Deno.test("a missing liburing is refused before anything is created, saying how to fix it", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 64 << 10, undefined, 13);
  const r = await kcopydEnv(
    { KCOPYD_LIBURING_PATH: `${d.path}/no-liburing.so` },
    "copy",
    src,
    `${d.path}/new.img`,
  );
  refused(r, /Cannot load liburing .*apt-get install liburing2.*KCOPYD_LIBURING_PATH/, "liburing");
  assert.ok(!(await exists(`${d.path}/new.img`)), "no file was created");
});

Deno.test({
  name: "io_uring blocked by seccomp is refused before anything is created, saying how to fix it",
  ignore: !hasCc,
  async fn() {
    await using d = await tempDir();
    // A launcher that makes io_uring_setup fail with EPERM, as Docker's default profile does.
    await Deno.writeTextFile(
      `${d.path}/no_uring.c`,
      `#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (argc < 2 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) return 125;
  execvp(argv[1], argv + 1);
  return 127;
}
`,
    );
    await run("cc", "-O", "-o", `${d.path}/no_uring`, `${d.path}/no_uring.c`);
    const src = await image(d.path, "src.img", 64 << 10, undefined, 14);
    const out = await new Deno.Command(`${d.path}/no_uring`, {
      args: [Deno.execPath(), "run", "--allow-all", CLI, "copy", src, `${d.path}/new.img`],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const dec = new TextDecoder();
    refused(
      { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) },
      /io_uring is not permitted here \(EPERM\).*kernel\.io_uring_disabled.*seccomp/,
      "seccomp",
    );
    assert.ok(!(await exists(`${d.path}/new.img`)), "no file was created");
  },
});

Deno.test({
  name: "loop devices: copy to two mirrors with --verify, verify, zero and info",
  ignore: !loops.ok,
  async fn() {
    await using src = await loopImage(8 << 20, { seed: 15 });
    await using a = await loopImage(8 << 20, { byte: 0 });
    await using b = await loopImage(16 << 20, { byte: 0 });
    let r = await kcopyd(
      "copy",
      `${src.path}:2048+4MiB`,
      a.path,
      `${b.path}:8M`,
      "--verify",
      "--json",
    );
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual([j.bytes, j.readErr, j.writeErr, j.errors, j.verified], [
      4 << 20,
      false,
      0,
      [],
      true,
    ]);
    const want = await sha256File(src.image, 2048 * 512, 4 << 20);
    assert.equal(await sha256File(a.image, 0, 4 << 20), want);
    assert.equal(await sha256File(b.image, 8 << 20, 4 << 20), want);
    r = await kcopyd("verify", `${src.path}:2048+4MiB`, a.path, `${b.path}:16384`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    r = await kcopyd("zero", `${a.path}:8+8`, "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).bytes, 4096);
    r = await kcopyd("verify", `${src.path}:2048+4MiB`, a.path, `${b.path}:16384`, "--json");
    assert.equal(r.code, 1);
    const v = JSON.parse(r.stdout);
    assert.deepEqual([v.dests[0].firstDiffSector, v.dests[0].diffSectors, v.dests[1].equal], [
      8,
      8,
      true,
    ]);
    assert.ok((await readRange(a.image, 8 * 512, 4096)).every((x) => x === 0));
  },
});

Deno.test({
  name: "info prints size, block sizes, kind and O_DIRECT; --json has one object per path",
  ignore: !loops.ok,
  async fn() {
    await using d = await tempDir();
    const file = await image(d.path, "f.img", 1 << 20, 0);
    await using loop = await attachLoop(file, { sectorSize: 4096 });
    const r = await kcopyd("info", file, loop.path, "--json");
    assert.equal(r.code, 0, r.stderr);
    const [a, b] = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(a).sort(), [
      "direct",
      "isBlockDevice",
      "logicalBlockSize",
      "path",
      "physicalBlockSize",
      "sizeBytes",
      "sizeSectors",
    ]);
    assert.deepEqual([a.path, a.sizeBytes, a.sizeSectors, a.logicalBlockSize, a.isBlockDevice], [
      file,
      1 << 20,
      2048,
      512,
      false,
    ]);
    assert.equal(typeof a.physicalBlockSize, "number");
    assert.equal(a.direct, true, "/var/tmp supports O_DIRECT");
    assert.deepEqual([b.path, b.sizeBytes, b.sizeSectors, b.logicalBlockSize, b.isBlockDevice], [
      loop.path,
      1 << 20,
      2048,
      4096,
      true,
    ]);
    assert.equal(b.physicalBlockSize, 4096);
    assert.equal(b.direct, true);
    const t = await kcopyd("info", loop.path);
    assert.equal(
      t.stdout,
      `${loop.path}:\n` +
        `  size:            1048576 bytes (1.00 MiB), 2048 sectors of 512 bytes\n` +
        `  block sizes:     logical 4096, physical 4096\n` +
        `  kind:            block device\n` +
        `  O_DIRECT:        yes\n`,
    );
    refused(await kcopyd("info", `${d.path}/none`), /Cannot open "[^"]*none".*ENOENT/, "none");
    refused(await kcopyd("info", d.path), /it is a directory/, "dir");
  },
});

Deno.test({
  name: "block devices: signatures need --force; busy, read-only and misaligned ones are refused",
  ignore: !loops.ok,
  async fn() {
    await using d = await tempDir();
    const src = await image(d.path, "src.img", 1 << 20, undefined, 9);
    const fsImage = await image(d.path, "fs.img", 1 << 20, 0);
    // An ext4 superblock magic at byte 1080 is what blkid and mkfs look for.
    {
      using f = await Deno.open(fsImage, { write: true });
      await f.seek(1080, Deno.SeekMode.Start);
      await f.write(new Uint8Array([0x53, 0xef]));
    }
    await using fsLoop = await attachLoop(fsImage);
    refused(
      await kcopyd("copy", `${src}:0+8`, `${fsLoop.path}:64`),
      /"\/dev\/loop\d+" holds an existing ext2\/3\/4 filesystem.*--force/,
      "signature",
    );
    refused(await kcopyd("zero", `${fsLoop.path}:64+8`), /ext2\/3\/4 filesystem/, "zero signature");
    assert.ok((await readRange(fsImage, 64 * 512, 4096)).every((b) => b === 0), "unchanged");
    const r = await kcopyd("copy", `${src}:0+8`, `${fsLoop.path}:64`, "--force", "-q");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(fsImage, 64 * 512, 4096), await sha256File(src, 0, 4096));

    const plain = await image(d.path, "plain.img", 1 << 20, 0x5a);
    await using busyLoop = await attachLoop(plain);
    {
      await using holder = await openDevice(busyLoop.path, { write: true }); // O_EXCL
      assert.ok(holder.exclusive);
      refused(
        await kcopyd("copy", `${src}:0+8`, busyLoop.path),
        /"\/dev\/loop\d+".*busy: it is mounted or held open exclusively/,
        "busy",
      );
    }
    await using roLoop = await attachLoop(plain, { readOnly: true });
    refused(await kcopyd("copy", `${src}:0+8`, roLoop.path), /read-only/, "read-only loop");
    const big = await image(d.path, "big.img", 17 << 20, 0x5a);
    await using l4k = await attachLoop(big, { sectorSize: 4096 });
    const source = await image(d.path, "s17.img", 17 << 20, undefined, 16);
    // 16 MiB + 512 bytes: the CLI's first 16 MiB job would be aligned, the last not.
    refused(
      await kcopyd("copy", `${source}:0+32769`, l4k.path),
      /"\/dev\/loop\d+" has 4096-byte logical blocks: sector 0 and count 32769 must be multiples of 8/,
      "misaligned",
    );
    refused(await kcopyd("zero", `${l4k.path}:1+8`), /multiples of 8 sectors/, "misaligned zero");
    assert.ok((await Deno.readFile(plain)).every((b) => b === 0x5a), "nothing was written");
    assert.ok((await Deno.readFile(big)).every((b) => b === 0x5a), "nothing was written");
  },
});

Deno.test({
  name: "a real ext4 filesystem needs --force, and a mounted one is refused even with it",
  ignore: !hasMkfs,
  async fn() {
    await using d = await tempDir();
    const src = await image(d.path, "src.img", 1 << 20, undefined, 17);
    const fsImage = await image(d.path, "ext4.img", 8 << 20, 0);
    await run("mkfs.ext4", "-q", "-F", fsImage);
    const before = await sha256File(fsImage, 8192 * 512, 4096); // mounting changes the superblock
    await using loop = await attachLoop(fsImage);
    refused(await kcopyd("copy", `${src}:0+8`, `${loop.path}:8192`), /ext2\/3\/4 filesystem/, "fs");
    const mnt = `${d.path}/mnt`;
    await Deno.mkdir(mnt);
    await run("mount", loop.path, mnt);
    try {
      refused(
        await kcopyd("copy", `${src}:0+8`, `${loop.path}:8192`, "--force"),
        /busy: it is mounted/,
        "mounted",
      );
    } finally {
      await run("umount", mnt);
    }
    assert.equal(await sha256File(fsImage, 8192 * 512, 4096), before, "the region is untouched");
  },
});

Deno.test({
  name: "an I/O error exits 1, says where, and --json still prints the summary",
  ignore: !faults.ok,
  async fn() {
    await using d = await tempDir();
    const srcImage = await makeImage(1 << 20, { seed: 10, dir: d.path });
    await using bad = await faultDevice({ image: srcImage, badReads: [[300 * 512, 512]] });
    const dst = `${d.path}/out.img`;
    let r = await kcopyd("copy", bad.path, dst, "--json");
    assert.equal(r.code, 1);
    let j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j).sort(), COPY_KEYS);
    assert.equal(j.readErr, true);
    assert.equal(j.writeErr, 0);
    assert.deepEqual(j.errors, [{ sector: 300, count: 1, code: "EIO" }]);
    assert.ok(j.bytes < 1 << 20);
    r = await kcopyd("copy", bad.path, dst, "--ignore-errors");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /read error EIO on "[^"]+" at sectors 300\+1/);
    const want = await readRange(srcImage, 0, 1 << 20);
    want.fill(0, 300 * 512, 301 * 512);
    assert.equal(await sha256File(dst), sha256(want), "--ignore-errors zeroes only the bad sector");
    r = await kcopyd("copy", bad.path, `${d.path}/v.img`, "--ignore-errors", "--verify", "--json");
    j = JSON.parse(r.stdout);
    assert.equal(r.code, 1);
    assert.equal(j.bytes, (1 << 20) - 512, "the unreadable sector is not counted as copied");
    assert.equal(j.verified, false, "the zeroed sector cannot match an unreadable source");
  },
});

Deno.test({
  name:
    "SIGINT and SIGTERM mid-copy stop issuing I/O, report the known-good sectors, exit 130 / 143",
  ignore: !loops.ok,
  async fn() {
    await using src = await loopImage(96 << 20, { seed: 3 });
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      await using dst = await loopImage(96 << 20, { byte: 0 });
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", CLI, "copy", src.path, dst.path, "--rate", "32M", "--json"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Once the first 8 MiB job (a quarter second at --rate 32M) has written anything it is in
      // flight, and in-flight I/O is allowed to finish: at least that much ends up known good.
      await waitFor(
        async () => (await readRange(dst.image, 0, 512)).some((b) => b !== 0),
        20_000,
        "the copy to start",
      );
      child.kill(signal);
      const out = await child.output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, code, stderr);
      assert.equal(out.signal, null, "exited by itself, not killed by the signal");
      assert.doesNotMatch(stderr, /\n\s+at /, "no stack trace");
      const j = JSON.parse(new TextDecoder().decode(out.stdout));
      assert.equal(j.interrupted, signal);
      const good = j.knownGoodSectors;
      assert.ok(good >= 16384 && good < 196608, `known good ${good}`);
      assert.ok(j.bytes >= good * 512);
      const m = stderr.match(
        /interrupted by (\w+); in-flight I\/O finished\. Known good: (\d+) of (\d+)/,
      );
      assert.ok(m, stderr);
      assert.deepEqual([m[1], Number(m[2]), Number(m[3])], [signal, good, 196608]);
      assert.match(stderr, new RegExp(`"${dst.path}" sectors 0\\+${good}`));
      assert.equal(
        await sha256File(dst.image, 0, good * 512),
        await sha256File(src.image, 0, good * 512),
      );
    }
  },
});

Deno.test({
  name: "under a pseudo-terminal: the progress bar, Ctrl-C, and the terminal left as it was",
  ignore: !hasScript,
  async fn() {
    await using d = await tempDir();
    const big = await makeImage(96 << 20, { seed: 4 });
    try {
      // A whole copy: the bar is redrawn in place and ends with a newline before the summary.
      const out = await new Deno.Command("script", {
        args: [
          "-q",
          "-e",
          "-c",
          `${Deno.execPath()} run -A ${CLI} copy ${big} ${d.path}/o.img --rate 128M`,
          "/dev/null",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { TERM: "xterm", COLUMNS: "100" },
      }).output();
      let text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, text);
      assert.match(text, /copy \[#+-*\] +\d+\.\d% .* \/ 96\.0 MiB .*\/s +ETA \d\d:\d\d/);
      assert.ok(text.includes("\r\x1b[K"), "the line is redrawn in place");
      assert.match(
        text,
        /100\.0% 96\.0 MiB \/ 96\.0 MiB[^\n]*\r\nkcopyd: 96\.0 MiB copied to 1 destination/,
      );
      // Ctrl-C typed on the terminal: the line discipline sends SIGINT to the process group.
      const inner = `stty -g; ${Deno.execPath()} run -A ${CLI} copy ${big} ${d.path}/c.img ` +
        `--rate 32M; echo "exit=$?"; stty -g`;
      const child = new Deno.Command("script", {
        args: ["-q", "-e", "-c", `bash -c '${inner}'`, "/dev/null"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        env: { TERM: "xterm", SHELL: "/bin/bash" },
      }).spawn();
      const keys = child.stdin.getWriter();
      await new Promise((r) => setTimeout(r, 1500));
      await keys.write(new Uint8Array([3]));
      const [status, typed] = await Promise.all([
        child.status,
        new Response(child.stdout).text(),
        child.stderr.cancel(),
      ]);
      await keys.close().catch(() => {});
      text = typed;
      assert.equal(status.code, 0, text);
      const lines = text.split("\r\n");
      assert.match(text, /kcopyd: SIGINT: stopping once the I\/O in flight has finished/);
      assert.match(
        text,
        /interrupted by SIGINT; in-flight I\/O finished\. Known good: \d+ of 196608/,
      );
      assert.ok(lines.includes("exit=130"), text);
      assert.equal(lines[0], lines[lines.indexOf("exit=130") + 1], "stty settings unchanged");
    } finally {
      await Deno.remove(big);
    }
  },
});

Deno.test("options --write-seq, --flush, --sub-job-size, --memory, --throttle and --rate copy exactly", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 8 << 20, undefined, 12);
  const want = await sha256File(src);
  const runs: string[][] = [
    ["--write-seq", "--flush"],
    ["--sub-job-size", "64K", "--memory", "256K"],
    ["--throttle", "50"],
    ["--throttle", "50%", "--sub-job-size", "1M", "--memory", "1M"],
  ];
  for (const [i, opts] of runs.entries()) {
    const r = await kcopyd("copy", src, `${d.path}/o${i}.img`, "-q", ...opts);
    assert.equal(r.code, 0, `${opts}: ${r.stderr}`);
    assert.equal(await sha256File(`${d.path}/o${i}.img`), want, opts.join(" "));
  }
  const r = await kcopyd("copy", src, `${d.path}/rate.img`, "--rate", "16MiB/s", "--json");
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(j.bytesPerSecond < 16 * 2 ** 20 * 1.25, `rate ${j.bytesPerSecond}`);
  assert.ok(j.seconds > 0.3, `8 MiB at 16 MiB/s took ${j.seconds} s`);
  assert.equal(await sha256File(`${d.path}/rate.img`), want);
});

Deno.test({
  name: "NBD: a region suffix after the whole URI, copy and verify through the command",
  ignore: !nbd.ok,
  async fn() {
    await using d = await tempDir();
    const src = await image(d.path, "src.img", 4 << 20, undefined, 18);
    await using server = await startNbdkit(["memory", "16M"]);
    let r = await kcopyd("copy", `${src}:0+2MiB`, `${server.uri}:8`, "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).bytes, 2 << 20);
    r = await kcopyd("verify", `${src}:0+2MiB`, `${server.uri}:8`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    r = await kcopyd("verify", `${src}:0+2MiB`, `${server.uri}:0`, "--json");
    assert.equal(r.code, 1);
    r = await kcopyd("info", server.uri, "--json");
    assert.equal(JSON.parse(r.stdout)[0].sizeBytes, 16 << 20);
  },
});

Deno.test("the install line in the README works with exactly the permissions it documents", async () => {
  const readme = await Deno.readTextFile(`${ROOT}README.md`);
  const line = readme.split("\n").find((l) => l.startsWith("deno install -g "));
  assert.ok(line, "README has a deno install -g line");
  assert.match(line, / -n kcopyd /);
  await using d = await tempDir();
  const args = line.split(/\s+/).slice(1);
  args.splice(1, 0, "--root", d.path);
  await new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdout: "null", stderr: "piped" })
    .output().then((o) => assert.ok(o.success, new TextDecoder().decode(o.stderr)));
  const env = { PATH: `${dirname(Deno.execPath())}:${Deno.env.get("PATH")}`, NO_COLOR: "1" };
  const src = await image(d.path, "src.img", 1 << 20, undefined, 19);
  const bin = `${d.path}/bin/kcopyd`;
  const out = await new Deno.Command(bin, {
    args: ["copy", `${src}:0+64`, `${d.path}/o.img`, "--verify", "--json"],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(JSON.parse(new TextDecoder().decode(out.stdout)).verified, true);
  if (nbd.ok) {
    // nbd:// over TCP is what --allow-net is for.
    const port = 20000 + Math.floor(Math.random() * 20000);
    const server = new Deno.Command("nbdkit", {
      args: [
        "--foreground",
        "--exit-with-parent",
        "-i",
        "127.0.0.1",
        "-p",
        `${port}`,
        "memory",
        "1M",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await waitFor(
        () =>
          Deno.connect({ hostname: "127.0.0.1", port }).then((c) => (c.close(), true), () => false),
        10_000,
        "nbdkit",
      );
      const info = await new Deno.Command(bin, {
        args: ["info", `nbd://127.0.0.1:${port}/`, "--json"],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(info.code, 0, new TextDecoder().decode(info.stderr));
      assert.equal(JSON.parse(new TextDecoder().decode(info.stdout))[0].sizeBytes, 1 << 20);
    } finally {
      server.kill("SIGTERM");
      await server.status;
    }
  }
  const task = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "kcopyd", "--version"],
    cwd: ROOT,
    stdout: "piped",
    env,
  }).output();
  assert.match(new TextDecoder().decode(task.stdout), /^kcopyd \d+\.\d+\.\d+\n$/);
});

Deno.test("deno task compile builds a binary, or says clearly why it cannot", async () => {
  await using d = await tempDir();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "compile", `${d.path}/kcopyd`],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  if (out.success) {
    const v = await new Deno.Command(`${d.path}/kcopyd`, { args: ["--version"], stdout: "piped" })
      .output();
    assert.match(new TextDecoder().decode(v.stdout), /^kcopyd /);
  } else {
    assert.equal(out.code, 1);
    assert.match(err, /compile: deno compile could not build the binary/);
    assert.match(err, /deno install -g -n kcopyd/);
    assert.ok(!err.includes("\x1b["), "no colour codes");
  }
});

Deno.test("the demo copies to two mirrors, verifies, zeroes, and leaves nothing behind", async () => {
  const demoDirs = () =>
    [...Deno.readDirSync("/dev/shm")].filter((e) => e.name.startsWith("kcopyd-demo-")).length;
  const before = demoDirs();
  const demo = (...args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", `${ROOT}tools/demo.ts`, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
  for (const args of [[], ["--files", "--size", "32M"]]) {
    const out = await demo(...args).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    assert.match(text, args.length ? /devices: image files/ : loops.ok ? /loop devices/ : /image/);
    assert.equal(text.match(/matches the source/g)?.length, 2);
    assert.match(text, /reads back as zeros/);
    assert.match(text, /summary: copy \d+\.\d\d GiB\/s, verify \d+\.\d\d GiB\/s/);
  }
  // Interrupted once its devices exist: it stops, cleans up and exits 130.
  const child = demo().spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("devices:")) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  child.kill("SIGINT");
  await reader.cancel();
  const status = await child.status;
  await child.stderr.cancel();
  assert.equal(status.code, 130);
  assert.equal(demoDirs(), before, "the demo removed its images");
  if (loops.ok) {
    const list = await run("losetup", "-a");
    assert.doesNotMatch(list, /kcopyd-demo-/, "the demo detached its loop devices");
  }
});
