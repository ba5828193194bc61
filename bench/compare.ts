// `deno task bench:compare`: kcopyd against dd, qemu-img convert, nbdcopy, fio (the io_uring
// ceiling of the same shape) and a tight C liburing loop, on the same data, interleaved, several
// rounds. Every copy is checked (xxh128 of the whole destination, or chunk by chunk) before its
// time counts; kcopyd runs in processes of its own (bench/copy_job.ts, bench/chunk_jobs.ts, the
// CLI) so that its peak RSS is measured like every peer's.
//
//   deno task bench:compare [--size 1G] [--rounds 3] [--chunks 16384] [--out bench/RESULTS.md]
import { parseArgs } from "node:util";
import { Buffer } from "node:buffer";
import { KcopydClient } from "../mod.ts";
import { parseBytes } from "../lib/cli/units.ts";
import { has, selfTimed, sh, timed, type Timing } from "./lib/exec.ts";
import { Results } from "./lib/results.ts";
import { type BenchDevices, fillFile, makeDevices } from "./lib/devices.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "1G" },
    rounds: { type: "string", default: "3" },
    chunks: { type: "string", default: "16384" },
    out: { type: "string", default: new URL("./RESULTS.md", import.meta.url).pathname },
  },
});
const SIZE = Number(parseBytes(values.size!, "--size"));
const ROUNDS = Number(values.rounds);
if (SIZE % (1 << 20) !== 0 || SIZE < 64 << 20) {
  console.error(`--size must be whole MiB and at least 64M: got ${values.size}`);
  Deno.exit(2);
}
if (!Number.isInteger(Number(values.chunks)) || Number(values.chunks) < 1) {
  console.error(`--chunks must be a positive integer: got ${values.chunks}`);
  Deno.exit(2);
}
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) {
  console.error(`--rounds must be a positive integer: got ${values.rounds}`);
  Deno.exit(2);
}
const GiB = 2 ** 30;
const CHUNKS = Number(values.chunks);
const chunkCount = CHUNKS.toLocaleString("en-US").replaceAll(",", " ");
const IN_FLIGHT = 2048;
const root = Deno.uid() === 0;
const here = (p: string) => new URL(p, import.meta.url).pathname;
const DENO = Deno.execPath();
const CLI = here("../cli.ts");
const results = new Results();

// ---------- devices ----------

let devs!: BenchDevices; // set by setup()
let files: string[] = [];
let dev: string[] = [];
let srcHash = "";
let zeroHash = "";
Deno.addSignalListener(
  "SIGINT",
  () => (devs?.cleanup() ?? Promise.resolve()).finally(() => Deno.exit(130)),
);

async function ensureTools() {
  const want: Record<string, string> = {
    "qemu-img": "qemu-utils",
    nbdcopy: "libnbd-bin",
    nbdkit: "nbdkit",
    fio: "fio",
    xxhsum: "xxhash",
    "/usr/bin/time": "time",
    cc: "gcc",
  };
  const missing: string[] = [];
  for (const [tool, pkg] of Object.entries(want)) {
    const ok = tool.startsWith("/")
      ? await Deno.stat(tool).then(() => true, () => false)
      : await has(tool);
    if (!ok) missing.push(pkg);
  }
  if (!(await Deno.stat("/usr/include/liburing.h").then(() => true, () => false))) {
    missing.push("liburing-dev");
  }
  if (missing.length && root && (await has("apt-get"))) {
    console.log(`installing ${missing.join(" ")} ...`);
    await sh("apt-get", ["update", "-qq"], { quiet: true });
    await sh("apt-get", ["install", "-y", "-qq", ...missing]);
  } else if (missing.length) {
    console.log(
      `missing: ${missing.join(" ")} (install them with apt-get); their rows are skipped`,
    );
  }
  for (const tool of ["xxhsum", "/usr/bin/time"]) {
    if (!(await has(tool))) throw new Error(`${tool} is needed: apt-get install xxhash time`);
  }
}

/** xxh128 of a file, or of standard input when the path is "-" (then `input` is a shell pipe). */
async function hash(path: string, input?: string): Promise<string> {
  const r = input
    ? await sh("sh", ["-c", `${input} | xxhsum -H2 -`])
    : await sh("xxhsum", ["-H2", path]);
  return r.stdout.split(/\s+/)[0];
}

const reset = (ds: number[]) => devs.reset(ds);
const settle = (ds: number[]) => devs.settle(ds);

async function setup() {
  console.log(`making ${SIZE / GiB} GiB of random source data and 3 destinations ...`);
  devs = await makeDevices(SIZE, 3);
  files = devs.files;
  dev = devs.dev;
  srcHash = await hash(files[0]);
  zeroHash = await hash("-", `head -c ${SIZE} /dev/zero`);
  // A virtual machine pays dearly the first time it touches memory: touch 2 × SIZE once and give
  // it back, so that the first tool to allocate (an nbdkit export, tmpfs pages) does not pay it.
  const warm = `${devs.dir}/warm.img`;
  await fillFile(warm, 2 * SIZE);
  await Deno.remove(warm);
  console.log(
    devs.loops
      ? `devices: loop devices ${dev.join(" ")} over tmpfs files (direct I/O)`
      : "devices: plain files (not root: no loop devices)",
  );
}

/** Every destination must hash like the source (or like zeros). */
async function check(tool: string, ds: number[], want = srcHash) {
  await settle(ds);
  // Side by side: two cores, and each hash is bound by one of them.
  const got = await Promise.all(ds.map((d) => hash(files[d])));
  const bad = ds.filter((_, i) => got[i] !== want);
  if (bad.length) throw new Error(`${tool}: destination(s) ${bad.join(", ")} are wrong`);
}

/** Runs a one-output peer once per destination: total time, largest RSS. */
async function perDest(ds: number[], make: (d: number) => [string, string[]]): Promise<Timing> {
  let seconds = 0;
  let rssKiB = 0;
  for (const d of ds) {
    const t = await timed(...make(d));
    seconds += t.seconds;
    rssKiB = Math.max(rssKiB, t.rssKiB);
  }
  return { seconds, rssKiB };
}

// ---------- W1 / W2: sequential copies ----------

const dd = (d: number): [string, string[]] => ["dd", [
  `if=${dev[0]}`,
  `of=${dev[d]}`,
  "bs=1M",
  "iflag=direct",
  "oflag=direct",
  "conv=notrunc",
  "status=none",
]];
const qemuImg = (d: number): [string, string[]] => ["qemu-img", [
  "convert",
  ...["-f", "raw", "-O", "raw", "-t", "none", "-T", "none", "-m", "16", "-W", "-n"],
  dev[0],
  dev[d],
]];
let nbdcopyRequest = "";
// nbdcopy writes block devices through the page cache: --flush makes it pay for durability
// like the direct-I/O tools do.
const nbdcopy = (d: number): [string, string[]] => ["nbdcopy", [
  "--flush",
  ...(nbdcopyRequest ? [`--request-size=${nbdcopyRequest}`] : []),
  dev[0],
  dev[d],
]];

async function pickNbdcopyRequestSize() {
  let best = { size: "", rate: 0 };
  for (const size of ["", "262144", "1048576", "4194304"]) {
    await reset([1]);
    const t = await timed("nbdcopy", [...(size ? [`--request-size=${size}`] : []), dev[0], dev[1]]);
    const rate = SIZE / GiB / t.seconds;
    if (rate > best.rate) best = { size, rate };
  }
  nbdcopyRequest = best.size;
  console.log(`nbdcopy: best --request-size ${best.size || "(default)"}`);
}

async function fioCeiling(nDests: number): Promise<Timing> {
  const args = [
    "--output-format=json",
    "--ioengine=io_uring",
    "--direct=1",
    "--bs=512k",
    "--iodepth=16",
    `--size=${SIZE}`,
    "--name=read",
    "--rw=read",
    `--filename=${dev[0]}`,
  ];
  for (let d = 1; d <= nDests; d++) {
    args.push(`--name=write${d}`, "--rw=write", `--filename=${dev[d]}`);
  }
  const t = await timed("fio", args);
  // fio's own run time (all jobs run at once), without its start-up.
  const json = JSON.parse(t.text.slice(t.text.indexOf("{"), t.text.lastIndexOf("}") + 1));
  const ms = Math.max(...json.jobs.map((j: { job_runtime: number }) => j.job_runtime));
  return { seconds: ms / 1000, rssKiB: t.rssKiB };
}

type Tool = [name: string, run: () => Promise<Timing>, verify: boolean];

/** The tools in round `round`'s order: rotated each round, so no tool always goes first. */
function rotated<T>(tools: T[], round: number): T[] {
  const k = round % tools.length;
  return [...tools.slice(k), ...tools.slice(0, k)];
}

async function sequential(workload: string, nDests: number) {
  const ds = Array.from({ length: nDests }, (_, i) => i + 1);
  const outs = ds.map((d) => dev[d]);
  const tools: Tool[] = [
    ["kcopyd (CLI)", () => timed(DENO, ["run", "-A", CLI, "copy", dev[0], ...outs, "-q"]), true],
    [
      "kcopyd (library)",
      () => selfTimed(DENO, ["run", "-A", here("copy_job.ts"), dev[0], ...outs]),
      true,
    ],
  ];
  if (await has("dd")) tools.push(["dd", () => perDest(ds, dd), true]);
  if (await has("qemu-img")) tools.push(["qemu-img", () => perDest(ds, qemuImg), true]);
  if (await has("nbdcopy")) tools.push(["nbdcopy", () => perDest(ds, nbdcopy), true]);
  if (await has("fio")) {
    tools.push(["fio io_uring ceiling (read + write, no copy)", () => fioCeiling(nDests), false]);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run, verify] of rotated(tools, round)) {
      await reset(ds);
      const t = await run();
      if (verify) await check(name, ds);
      results.record(workload, name, "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
    }
  }
}

// ---------- W3 / W4: random chunks ----------

async function chunkList(chunk: number): Promise<{ path: string; list: Uint32Array }> {
  const n = SIZE / chunk;
  const list = new Uint32Array(CHUNKS);
  let x = 12345;
  for (let i = 0; i < CHUNKS; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    list[i] = x % n;
  }
  const path = `${devs.dir}/chunks-${chunk}.bin`;
  await Deno.writeFile(path, new Uint8Array(list.buffer));
  return { path, list };
}

/** Every listed chunk of the destination equals the source's (memcmp through node:buffer). */
async function checkChunks(tool: string, chunk: number, list: Uint32Array) {
  await settle([1]);
  using a = await Deno.open(files[0]);
  using b = await Deno.open(files[1]);
  const x = Buffer.alloc(chunk);
  const y = Buffer.alloc(chunk);
  for (const c of new Set(list)) {
    a.seekSync(c * chunk, Deno.SeekMode.Start);
    b.seekSync(c * chunk, Deno.SeekMode.Start);
    for (let n = 0; n < chunk;) n += a.readSync(x.subarray(n)) ?? chunk;
    for (let n = 0; n < chunk;) n += b.readSync(y.subarray(n)) ?? chunk;
    if (!x.equals(y)) throw new Error(`${tool}: chunk ${c} differs`);
  }
}

async function chunks(workload: string, chunk: number, refBin: string | undefined) {
  const { path, list } = await chunkList(chunk);
  const args = [dev[0], dev[1], `${chunk}`, `${IN_FLIGHT}`, path];
  const jobs = here("chunk_jobs.ts");
  const tools: [string, () => Promise<Timing>][] = [
    ["kcopyd (library)", () => selfTimed(DENO, ["run", "-A", jobs, ...args])],
    [
      "kcopyd (library, inline waits)",
      () => selfTimed(DENO, ["run", "-A", jobs, "--wait", "inline", ...args]),
    ],
  ];
  if (refBin) {
    tools.push(["C liburing loop (bench/ref/chunk_copy.c)", () => selfTimed(refBin, args)]);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of rotated(tools, round)) {
      await reset([1]);
      const t = await run();
      await checkChunks(name, chunk, list);
      results.record(workload, name, "chunks/s", CHUNKS / t.seconds, t.rssKiB);
    }
    // A peer run once per chunk: 64 chunks, rate extrapolated.
    const sample = 64;
    const t0 = performance.now();
    for (const c of list.subarray(0, sample)) {
      await sh("dd", [
        ...[`if=${dev[0]}`, `of=${dev[1]}`, `bs=${chunk}`, `skip=${c}`, `seek=${c}`, "count=1"],
        ...["iflag=direct", "oflag=direct", "conv=notrunc", "status=none"],
      ]);
    }
    const rate = sample / ((performance.now() - t0) / 1000);
    results.record(workload, "dd once per chunk (64 sampled)", "chunks/s", rate, 0);
  }
}

// ---------- W5: zero ----------

async function zero() {
  const W5 = "W5 zero 3 destinations";
  const ds = [1, 2, 3];
  const tools: Tool[] = [
    [
      "kcopyd (CLI)",
      () => timed(DENO, ["run", "-A", CLI, "zero", ...ds.map((d) => dev[d]), "-q"]),
      true,
    ],
    ["dd if=/dev/zero, once per destination", () =>
      perDest(ds, (d) => ["dd", [
        ...["if=/dev/zero", `of=${dev[d]}`, "bs=1M", `count=${SIZE >> 20}`],
        ...["oflag=direct", "conv=notrunc", "status=none"],
      ]]), true],
  ];
  if (devs.loops && (await has("blkdiscard"))) {
    tools.push([
      "blkdiscard -z, once per destination",
      () => perDest(ds, (d) => ["blkdiscard", ["-z", dev[d]]]),
      true,
    ]);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of rotated(tools, round)) {
      await reset(ds);
      const t = await run();
      await check(name, ds, zeroHash);
      results.record(W5, name, "GiB/s", (ds.length * SIZE) / GiB / t.seconds, t.rssKiB);
    }
  }
}

// ---------- W6 / W7: to and from an NBD server ----------

async function nbd() {
  if (!(await has("nbdkit")) || !(await has("nbdcopy"))) {
    console.log("W6/W7 skipped: nbdkit and nbdcopy are needed");
    return;
  }
  const sock = `${devs.dir}/nbd.sock`;
  const uri = `nbd+unix:///?socket=${sock}`;
  // A fresh (all-zero) memory export for every copy, so a failed copy cannot pass the check.
  const serve = async () => {
    await Deno.remove(sock).catch(() => {});
    const server = new Deno.Command("nbdkit", {
      args: ["--foreground", "--exit-with-parent", "-U", sock, "memory", `${SIZE}`],
      stdout: "null",
      stderr: "null",
    }).spawn();
    for (let i = 0; i < 250 && !(await Deno.stat(sock).then(() => true, () => false)); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    return async () => {
      server.kill("SIGTERM");
      await server.status;
    };
  };
  const checkRemote = async (tool: string) => {
    if ((await hash("-", `nbdcopy '${uri}' -`)) !== srcHash) {
      throw new Error(`${tool}: the NBD export differs from the source`);
    }
  };
  const kcopyd = (from: string, to: string) =>
    selfTimed(DENO, ["run", "-A", here("copy_job.ts"), from, to]);
  const up: [string, () => Promise<Timing>][] = [
    ["kcopyd (library)", () => kcopyd(files[0], uri)],
    ["nbdcopy", () => timed("nbdcopy", [files[0], uri])],
  ];
  const down: [string, () => Promise<Timing>][] = [
    ["kcopyd (library)", () => kcopyd(uri, files[1])],
    ["nbdcopy", () => timed("nbdcopy", [uri, files[1]])],
  ];
  const W6 = "W6 local → NBD (nbdkit memory)";
  const W7 = "W7 NBD → local (nbdkit memory)";
  // One untimed copy first: the first export of a run is slow for whoever meets it.
  const stopWarm = await serve();
  await sh("nbdcopy", [files[0], uri]);
  await stopWarm();
  for (let round = 0; round < ROUNDS; round++) {
    let stop = async () => {};
    for (const [name, run] of rotated(up, round)) {
      await stop();
      stop = await serve();
      const t = await run();
      await checkRemote(name);
      results.record(W6, name, "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
    }
    // The export now holds the source: copy it back (to the backing file itself).
    for (const [name, run] of rotated(down, round)) {
      await reset([1]);
      const t = await run();
      await check(`${name} NBD → local`, [1]);
      results.record(W7, name, "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
    }
    await stop();
  }
}

// ---------- goals ----------

/** Where each goal of the performance issue stands, from the medians. */
function goals(poolMiB: number): string[] {
  const out: string[] = [];
  const ratio = (a?: number, b?: number) => a && b ? `${(a / b).toFixed(2)}×` : "n/a";
  const best = (w: string, tools: string[]) =>
    Math.max(0, ...tools.map((t) => results.median(w, t) ?? 0));
  for (const w of ["W1 copy 1 → 1", "W2 copy 1 → 3 (source rate)"]) {
    const lib = results.median(w, "kcopyd (library)");
    const cli = results.median(w, "kcopyd (CLI)");
    const peer = best(w, ["dd", "qemu-img", "nbdcopy"]);
    const fio = results.median(w, "fio io_uring ceiling (read + write, no copy)");
    out.push(
      `- ${w}: library ${ratio(lib, peer)} the best peer, ${ratio(lib, fio)} the fio ceiling; ` +
        `CLI ${ratio(cli, peer)} and ${ratio(cli, fio)} (goals ≥ 1.0× and ≥ 0.9×)`,
    );
  }
  for (const w of [...results.rows.values()].map((r) => r.workload)) {
    if (!w.startsWith("W3") && !w.startsWith("W4") || out.some((l) => l.includes(w))) continue;
    const c = results.median(w, "C liburing loop (bench/ref/chunk_copy.c)");
    out.push(
      `- ${w}: library ${ratio(results.median(w, "kcopyd (library)"), c)} the C loop, ` +
        `inline waits ${
          ratio(results.median(w, "kcopyd (library, inline waits)"), c)
        } (goal ≥ 0.8×)`,
    );
  }
  const kcopydRss = [...results.rows.values()]
    .filter((r) => r.tool.startsWith("kcopyd"))
    .map((r) => [r, Math.max(...r.rssKiB) / 1024] as const);
  const worst = kcopydRss.reduce((a, b) => (b[1] > a[1] ? b : a));
  out.push(
    `- peak RSS of kcopyd: at most ${worst[1].toFixed(0)} MiB (${worst[0].workload}, ` +
      `${worst[0].tool}); goal: the pool (${poolMiB} MiB library, 32 MiB CLI) + 80 MiB`,
  );
  return out;
}

// ---------- main ----------

const started = performance.now();
const phase = (name: string) =>
  console.log(`${name} ... (${((performance.now() - started) / 1000).toFixed(0)} s)`);
try {
  await ensureTools();
  await setup();
  let refBin: string | undefined;
  if (await has("cc")) {
    refBin = `${devs.dir}/chunk_copy`;
    const ok = (await sh("cc", ["-O2", "-o", refBin, here("ref/chunk_copy.c"), "-luring"], {
      quiet: true,
    })).ok;
    if (!ok) refBin = undefined;
  }
  if (await has("nbdcopy")) await pickNbdcopyRequestSize();
  phase("W1");
  await sequential("W1 copy 1 → 1", 1);
  phase("W2");
  await sequential("W2 copy 1 → 3 (source rate)", 3);
  phase("W3");
  await chunks(`W3 ${chunkCount} random 64 KiB chunks, 2 048 in flight`, 65536, refBin);
  phase("W4");
  await chunks(`W4 ${chunkCount} random 4 KiB chunks, 2 048 in flight`, 4096, refBin);
  phase("W5");
  await zero();
  phase("W6/W7");
  await nbd();
  const kernel = (await sh("uname", ["-r"])).stdout.trim();
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1];
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  await using probe = await KcopydClient.create();
  const poolMiB = (probe.pages * 4096) / (1 << 20);
  const header = [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${navigator.hardwareConcurrency} cores` +
    `${cpu ? ` (${cpu.trim()})` : ""}, Linux ${kernel}, ${SIZE / GiB} GiB per device, ` +
    `${ROUNDS} rounds, ${devs.loops ? "tmpfs-backed loop devices, direct I/O" : "plain files"}.`,
    `Command: \`deno task bench:compare --size ${values.size} --rounds ${ROUNDS}` +
    `${CHUNKS === 16384 ? "" : ` --chunks ${CHUNKS}`}\` (${seconds} s).`,
    "Peers with one output run once per destination (W2, W5: their total time). Every copy was " +
    "checked before its time counted. kcopyd (library), the C loop and fio report their own copy " +
    "time; the other rows are whole processes, start-up included.",
  ].join("\n");
  const md = `${header}\n\n${results.table()}\n\nWhere the goals stand (medians):\n\n${
    goals(poolMiB).join("\n")
  }\n`;
  console.log("\n" + md);
  await Deno.writeTextFile(values.out!, md);
  console.log(`written to ${values.out}`);
} finally {
  await devs?.cleanup();
}
