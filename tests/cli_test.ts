// The kcopyd command end to end, as a subprocess, on real files and loop devices.
import assert from "node:assert/strict";
import { openDevice } from "../mod.ts";
import { makeImage, readRange, sha256, sha256File } from "./support/image.ts";
import { attachLoop, canUseLoop } from "./support/loop.ts";
import { canUseFaults, faultDevice } from "./support/fault_device.ts";
import { hasCommand } from "./support/run.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const loops = await canUseLoop();
if (!loops.ok) console.log(`skipping CLI loop-device tests: ${loops.reason}`);
const faults = await canUseFaults();
if (!faults.ok) console.log(`skipping CLI fault tests: ${faults.reason}`);
const hasScript = await hasCommand("script");
if (!hasScript) console.log("skipping the pseudo-terminal test: script (bsdutils) is missing");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function kcopyd(...args: string[]): Promise<Result> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
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

function noStackTrace(r: Result): void {
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
}

Deno.test("--help lists commands, region syntax, units and options; --version prints it", async () => {
  const h = await kcopyd("--help");
  assert.equal(h.code, 0);
  for (
    const word of [
      "copy",
      "zero",
      "verify",
      "info",
      "SECTOR[+COUNT]",
      "KiB",
      "--ignore-errors",
      "--write-seq",
      "--flush",
      "--verify",
      "--throttle",
      "--rate",
      "--sub-job-size",
      "--memory",
      "--json",
      "--quiet",
      "--force",
    ]
  ) {
    assert.ok(h.stdout.includes(word), `help mentions ${word}`);
  }
  const v = await kcopyd("--version");
  assert.equal(v.code, 0);
  const version =
    JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url))).version;
  assert.equal(v.stdout.trim(), `kcopyd ${version}`);
});

Deno.test("bad usage exits 2 with one line and no stack trace", async () => {
  for (
    const args of [
      [],
      ["frob"],
      ["copy", "--bogus"],
      ["copy", "/x"],
      ["info"],
      ["copy", "a", "b", "--throttle", "0"],
      ["copy", "a", "b", "--sub-job-size", "1000"],
      ["copy", "a", "b", "--memory", "1x"],
    ]
  ) {
    const r = await kcopyd(...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /^kcopyd: error: .+\n$/, `${args.join(" ")}`);
    noStackTrace(r);
  }
});

Deno.test("copy to a new file and an existing one, with --json checked field by field", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 3 << 20, undefined, 5);
  const existing = await image(d.path, "existing.img", 4 << 20, 0xee);
  const created = `${d.path}/new.img`;
  const r = await kcopyd("copy", `${src}:8+2MiB`, `${existing}:2048`, created, "--json");
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(j).sort(), [
    "bytes",
    "bytesPerSecond",
    "errors",
    "readErr",
    "seconds",
    "writeErr",
  ]);
  assert.equal(j.bytes, 2 << 20, "source bytes, not multiplied by destinations");
  assert.equal(typeof j.seconds, "number");
  assert.ok(j.seconds > 0);
  assert.ok(Math.abs(j.bytesPerSecond - j.bytes / j.seconds) < j.bytesPerSecond * 0.01);
  assert.equal(j.readErr, false);
  assert.equal(j.writeErr, 0);
  assert.deepEqual(j.errors, []);
  const want = sha256(await readRange(src, 8 * 512, 2 << 20));
  assert.equal(await sha256File(existing, 2048 * 512, 2 << 20), want);
  assert.equal((await Deno.stat(created)).size, 2 << 20, "created at the needed size");
  assert.equal(await sha256File(created), want);
  const before = await readRange(existing, 0, 2048 * 512);
  assert.ok(before.every((b) => b === 0xee), "bytes before the region untouched");
});

Deno.test("units: K is 1024, KB is 1000, plain numbers are sectors; sizes must be whole sectors", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 1 << 20, undefined, 6);
  const dst = await image(d.path, "dst.img", 1 << 20, 0);
  let r = await kcopyd("copy", `${src}:1K+512K`, `${dst}:4`, "-q", "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).bytes, 524288);
  assert.equal(await sha256File(dst, 2048, 524288), await sha256File(src, 1024, 524288));
  r = await kcopyd("copy", `${src}:0+4KB`, dst, "--json");
  assert.equal(r.code, 2, "4KB = 4000 bytes is not whole sectors");
  assert.match(r.stderr, /4000 bytes, not a whole number of 512-byte sectors/);
  r = await kcopyd("copy", `${src}:0+1024KB`, dst, "--json");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).bytes, 1024000);
  r = await kcopyd("copy", `${src}:0+16`, `${dst}:100`, "--json");
  assert.equal(JSON.parse(r.stdout).bytes, 16 * 512);
});

Deno.test("verify reports the first differing sector and the count; exit 1 when anything differs", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 1 << 20, undefined, 7);
  const a = `${d.path}/a.img`;
  const b = `${d.path}/b.img`;
  assert.equal((await kcopyd("copy", src, a, `${b}:16`, "--quiet", "--verify")).code, 0);
  let v = await kcopyd("verify", src, a, `${b}:16`);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  // Damage sectors 100..102 of b's copy (absolute 116..118 on b).
  using f = await Deno.open(b, { write: true });
  await f.seek(116 * 512, Deno.SeekMode.Start);
  await f.write(new Uint8Array(3 * 512).fill(0x42));
  v = await kcopyd("verify", src, a, `${b}:16`, "--json");
  assert.equal(v.code, 1);
  const j = JSON.parse(v.stdout);
  assert.equal(j.equal, false);
  assert.equal(j.dests[0].equal, true);
  assert.equal(j.dests[1].firstDiffSector, "116");
  assert.equal(j.dests[1].diffSectors, "3");
  v = await kcopyd("verify", src, `${b}:16`);
  assert.equal(v.code, 1);
  assert.match(v.stdout, /first differing sector 116, 3 of 2048 sectors differ/);
});

Deno.test("zero takes a region per destination; no count means to the end of that device", async () => {
  await using d = await tempDir();
  const a = await image(d.path, "a.img", 1 << 20, 0xff);
  const b = await image(d.path, "b.img", 1 << 20, 0xff);
  const r = await kcopyd("zero", `${a}:8+16`, `${b}:2000`, "--json", "--flush");
  assert.equal(r.code, 0, r.stderr);
  const A = await Deno.readFile(a);
  const B = await Deno.readFile(b);
  assert.ok(A.subarray(8 * 512, 24 * 512).every((x) => x === 0));
  assert.ok(A.subarray(0, 8 * 512).every((x) => x === 0xff));
  assert.ok(A.subarray(24 * 512).every((x) => x === 0xff));
  assert.ok(B.subarray(2000 * 512).every((x) => x === 0));
  assert.ok(B.subarray(0, 2000 * 512).every((x) => x === 0xff));
});

Deno.test("refusals exit 2, name the culprit, and leave the destination unchanged", async () => {
  await using d = await tempDir();
  const src = await image(d.path, "src.img", 1 << 20, undefined, 8);
  const small = await image(d.path, "small.img", 64 << 10, 0x77);
  await Deno.symlink(src, `${d.path}/link.img`);
  const cases: [string[], RegExp][] = [
    [["copy", src, small], /"[^"]*small.img" is too small: sector 0 \+ 2048 > 128 sectors/],
    [["copy", `${src}:0+64`, `${d.path}/link.img:32`], /overlaps the source/],
    [["copy", `${d.path}/missing.img`, small], /Source "[^"]*missing.img" does not exist/],
    [["copy", src, d.path], /is a directory/],
    [["copy", `${src}:0+9999999`, small], /Source range exceeds/],
    [["copy", `${src}:0+100B`, small], /not a whole number of 512-byte sectors/],
    [["verify", src, small], /smaller than the range/],
  ];
  const before = await sha256File(small);
  for (const [args, message] of cases) {
    const r = await kcopyd(...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    noStackTrace(r);
  }
  assert.equal(await sha256File(small), before, "nothing was written");
  assert.ok(!(await Deno.stat(`${d.path}/missing.img`).then(() => true, () => false)));
  // Disjoint ranges of one file are fine.
  const ok = await kcopyd("copy", `${src}:0+64`, `${d.path}/link.img:64`, "-q");
  assert.equal(ok.code, 0, ok.stderr);
});

Deno.test({
  name:
    "block devices: a filesystem signature needs --force, busy and read-only devices are refused",
  ignore: !loops.ok,
  async fn() {
    await using d = await tempDir();
    const src = await image(d.path, "src.img", 1 << 20, undefined, 9);
    const fsImage = await image(d.path, "fs.img", 1 << 20, 0);
    // An ext4 superblock magic at byte 1080 is what blkid and mkfs look for.
    using f = await Deno.open(fsImage, { write: true });
    await f.seek(1080, Deno.SeekMode.Start);
    await f.write(new Uint8Array([0x53, 0xef]));
    await using fsLoop = await attachLoop(fsImage);
    let r = await kcopyd("copy", `${src}:0+8`, `${fsLoop.path}:64`);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /holds an existing ext2\/3\/4 filesystem.*--force/);
    assert.ok((await readRange(fsImage, 64 * 512, 4096)).every((b) => b === 0), "unchanged");
    r = await kcopyd("copy", `${src}:0+8`, `${fsLoop.path}:64`, "--force", "-q");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sha256File(fsImage, 64 * 512, 4096), await sha256File(src, 0, 4096));

    const plain = await image(d.path, "plain.img", 1 << 20, 0x5a);
    await using busyLoop = await attachLoop(plain);
    {
      await using holder = await openDevice(busyLoop.path, { write: true }); // O_EXCL
      assert.ok(holder.exclusive);
      r = await kcopyd("copy", `${src}:0+8`, busyLoop.path);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /busy.*mounted or held open exclusively/);
    }
    await using roLoop = await attachLoop(plain, { readOnly: true });
    r = await kcopyd("copy", `${src}:0+8`, roLoop.path);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /read-only/);
    noStackTrace(r);
    assert.ok((await Deno.readFile(plain)).every((b) => b === 0x5a), "nothing was written");
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
    assert.deepEqual([a.path, a.sizeBytes, a.sizeSectors, a.isBlockDevice, a.direct], [
      file,
      1 << 20,
      2048,
      false,
      true,
    ]);
    assert.deepEqual([b.path, b.sizeBytes, b.logicalBlockSize, b.isBlockDevice], [
      loop.path,
      1 << 20,
      4096,
      true,
    ]);
    const t = await kcopyd("info", loop.path);
    assert.match(t.stdout, /1048576 bytes .*2048 sectors/);
    assert.match(t.stdout, /logical 4096/);
    assert.match(t.stdout, /block device/);
  },
});

Deno.test({
  name: "an I/O error exits 1, says where, and --json still prints the summary",
  ignore: !faults.ok,
  async fn() {
    const srcImage = await makeImage(1 << 20, { seed: 10 });
    await using bad = await faultDevice({ image: srcImage, badReads: [[300 * 512, 512]] });
    await using d = await tempDir();
    const dst = `${d.path}/out.img`;
    let r = await kcopyd("copy", bad.path, dst, "--json");
    assert.equal(r.code, 1);
    let j = JSON.parse(r.stdout);
    assert.equal(j.readErr, true);
    assert.deepEqual(j.errors, [{ sector: "300", count: "1", code: "EIO" }]);
    r = await kcopyd("copy", bad.path, dst, "--ignore-errors");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /read error EIO on "[^"]+" at sectors 300\+1/);
    const want = await readRange(srcImage, 0, 1 << 20);
    want.fill(0, 300 * 512, 301 * 512);
    assert.equal(await sha256File(dst), sha256(want), "--ignore-errors zeroes only the bad sector");
    r = await kcopyd("copy", bad.path, `${d.path}/v.img`, "--ignore-errors", "--verify", "--json");
    j = JSON.parse(r.stdout);
    assert.equal(r.code, 1);
    assert.equal(j.verified, false, "the zeroed sector cannot match an unreadable source");
    await Deno.remove(srcImage);
  },
});

Deno.test({
  name: "SIGINT and SIGTERM stop the copy, report the known-good sectors and exit 130 / 143",
  ignore: !loops.ok,
  async fn() {
    await using d = await tempDir();
    const src = await makeImage(256 << 20, { seed: 3 });
    try {
      for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
        const dst = `${d.path}/out-${signal}.img`;
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-all", CLI, "copy", src, dst, "--rate", "32M"],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        await new Promise((r) => setTimeout(r, 1500));
        child.kill(signal);
        const out = await child.output();
        const stderr = new TextDecoder().decode(out.stderr);
        assert.equal(out.code, code, stderr);
        assert.equal(out.signal, null, "exited by itself, not killed by the signal");
        const m = stderr.match(/interrupted by (\w+).* (\d+) of (\d+) sectors are known good/);
        assert.ok(m, stderr);
        assert.equal(m[1], signal);
        const good = Number(m[2]);
        assert.ok(good > 0 && good < 524288, `known good ${good}`);
        assert.equal(await sha256File(dst, 0, good * 512), await sha256File(src, 0, good * 512));
      }
    } finally {
      await Deno.remove(src);
    }
  },
});

Deno.test({
  name: "under a pseudo-terminal the progress bar is drawn on stderr",
  ignore: !hasScript,
  async fn() {
    await using d = await tempDir();
    const src = await makeImage(64 << 20, { seed: 4 });
    try {
      const cmd =
        `${Deno.execPath()} run --allow-all ${CLI} copy ${src} ${d.path}/o.img --rate 96M`;
      const out = await new Deno.Command("script", {
        args: ["-q", "-e", "-c", cmd, "/dev/null"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        env: { TERM: "xterm", COLUMNS: "100" },
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, text);
      assert.match(text, /copy \[#+-*\] +\d+\.\d% .* \/ 64\.0 MiB .*\/s +ETA \d\d:\d\d/);
      assert.ok(text.includes("\r\x1b[K"), "the line is redrawn in place");
      assert.match(text, /64\.0 MiB copied to 1 destination/);
    } finally {
      await Deno.remove(src);
    }
  },
});

Deno.test({
  name:
    "options --write-seq, --flush, --sub-job-size, --memory, --throttle and --rate copy exactly",
  ignore: false,
  async fn() {
    await using d = await tempDir();
    const src = await image(d.path, "src.img", 8 << 20, undefined, 12);
    const want = await sha256File(src);
    const runs: string[][] = [
      ["--write-seq", "--flush"],
      ["--sub-job-size", "64K", "--memory", "256K"],
      ["--throttle", "50"],
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
    assert.equal(await sha256File(`${d.path}/rate.img`), want);
  },
});

Deno.test("the demo copies to two mirrors, verifies, zeroes, and leaves nothing behind", async () => {
  const before = [...Deno.readDirSync("/dev/shm")].filter((e) => e.name.startsWith("kcopyd-demo-"));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("../tools/demo.ts", import.meta.url).pathname],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
  assert.equal(text.match(/matches the source/g)?.length, 2);
  assert.match(text, /reads back as zeros/);
  assert.match(text, /summary: copy \d+\.\d\d GiB\/s/);
  const after = [...Deno.readDirSync("/dev/shm")].filter((e) => e.name.startsWith("kcopyd-demo-"));
  assert.equal(after.length, before.length, "the demo removed its images");
  if (loops.ok) {
    const list = new TextDecoder().decode(
      (await new Deno.Command("losetup", { args: ["-a"], stdout: "piped" }).output()).stdout,
    );
    assert.doesNotMatch(list, /kcopyd-demo-/, "the demo detached its loop devices");
  }
});
