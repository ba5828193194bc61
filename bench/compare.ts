// `deno task bench:compare`: kcopyd against dd, qemu-img convert, nbdcopy, fio (the io_uring
// ceiling of the same shape) and a tight C liburing loop, on the same data, interleaved, several
// rounds. Every copy is checked (cmp, or chunk by chunk) before its time counts.
//
//   deno task bench:compare [--size 1G] [--rounds 2] [--out bench/RESULTS.md]
import { parseArgs } from "node:util";
import { KcopydClient, openDevice } from "../mod.ts";
import { parseBytes } from "../lib/cli/units.ts";
import { makeImage } from "../tests/support/image.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "1G" },
    rounds: { type: "string", default: "2" },
    out: { type: "string", default: new URL("./RESULTS.md", import.meta.url).pathname },
  },
});
const SIZE = Number(parseBytes(values.size!, "--size"));
const ROUNDS = Number(values.rounds);
const GiB = 2 ** 30;
const CHUNKS = 16384;
const IN_FLIGHT = 2048;
const root = Deno.uid() === 0;
const CLI = new URL("../cli.ts", import.meta.url).pathname;

// ---------- helpers ----------

async function sh(cmd: string, args: string[], opts: { quiet?: boolean } = {}) {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success && !opts.quiet) throw new Error(`${cmd} ${args.join(" ")}: ${text.trim()}`);
  return { ok: out.success, text };
}

async function has(cmd: string): Promise<boolean> {
  return (await sh("sh", ["-c", `command -v ${cmd}`], { quiet: true })).ok;
}

/** Runs a command under GNU time; returns seconds, peak RSS in KiB and its output. */
async function timed(
  cmd: string,
  args: string[],
): Promise<{ seconds: number; rssKiB: number; text: string }> {
  const t0 = performance.now();
  const r = await sh("/usr/bin/time", ["-f", "RSS_KIB=%M", cmd, ...args]);
  const seconds = (performance.now() - t0) / 1000;
  const m = r.text.match(/RSS_KIB=(\d+)/);
  return { seconds, rssKiB: m ? Number(m[1]) : 0, text: r.text };
}

/** Samples this process's RSS every 20 ms; `stop()` returns the peak in bytes. */
function sampleRss(): { stop: () => number } {
  let peak = Deno.memoryUsage().rss;
  const t = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 20);
  return {
    stop() {
      clearInterval(t);
      return Math.max(peak, Deno.memoryUsage().rss);
    },
  };
}

interface Row {
  workload: string;
  tool: string;
  unit: "GiB/s" | "chunks/s";
  values: number[];
  rssKiB: number[];
  note?: string;
}
const rows = new Map<string, Row>();
function record(
  workload: string,
  tool: string,
  unit: Row["unit"],
  v: number,
  rss: number,
  note?: string,
) {
  const key = `${workload}|${tool}`;
  const row = rows.get(key) ?? { workload, tool, unit, values: [], rssKiB: [], note };
  row.values.push(v);
  row.rssKiB.push(rss);
  rows.set(key, row);
}

// ---------- devices ----------

const dir = await Deno.makeTempDir({ dir: root ? "/dev/shm" : undefined, prefix: "kcopyd-bench-" });
const files = ["src", "d0", "d1", "d2"].map((n) => `${dir}/${n}.img`);
const loops: string[] = [];
let dev = files;

async function cleanup() {
  for (const l of loops.splice(0)) await sh("losetup", ["-d", l], { quiet: true });
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
Deno.addSignalListener("SIGINT", () => cleanup().finally(() => Deno.exit(130)));

async function ensureTools() {
  const want: Record<string, string> = {
    "qemu-img": "qemu-utils",
    nbdcopy: "libnbd-bin",
    fio: "fio",
    "/usr/bin/time": "time",
    cc: "gcc",
    cmp: "diffutils",
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
}

async function setup() {
  console.log(`making ${SIZE / GiB} GiB of random source data in ${dir} ...`);
  const src = await makeImage(SIZE, { seed: 42, dir });
  await Deno.rename(src, files[0]);
  for (const f of files.slice(1)) {
    await Deno.writeFile(f, new Uint8Array(0));
    await Deno.truncate(f, SIZE);
  }
  if (root && (await has("losetup"))) {
    dev = [];
    for (const f of files) {
      const l = (await sh("losetup", ["--find", "--show", "--direct-io=on", f])).text.trim();
      loops.push(l);
      dev.push(l);
    }
    console.log(`devices: loop devices ${dev.join(" ")} over tmpfs files (direct I/O)`);
  } else {
    console.log("devices: plain files (not root: no loop devices)");
  }
}

/** Empties a destination (punches its backing file) so a failed copy cannot pass the check. */
async function reset(i: number) {
  await sh("fallocate", ["--punch-hole", "--offset", "0", "--length", `${SIZE}`, files[i]], {
    quiet: true,
  });
}

async function same(a: string, b: string, bytes = SIZE): Promise<boolean> {
  return (await sh("cmp", ["-s", "-n", `${bytes}`, a, b], { quiet: true })).ok;
}

async function checkCopy(tool: string, dests: number[]) {
  // The comparisons run side by side: two cores, and each cmp is bound by one of them.
  const ok = await Promise.all(dests.map((d) => same(dev[0], dev[d])));
  const bad = dests.filter((_, i) => !ok[i]);
  if (bad.length) throw new Error(`${tool}: destination(s) ${bad.join(", ")} differ`);
}

// ---------- W1 / W2: sequential copies ----------

const peers: Record<string, (d: number) => [string, string[]]> = {
  dd: (
    d,
  ) => ["dd", [
    `if=${dev[0]}`,
    `of=${dev[d]}`,
    "bs=1M",
    "iflag=direct",
    "oflag=direct",
    "conv=notrunc",
    "status=none",
  ]],
  "qemu-img": (
    d,
  ) => ["qemu-img", [
    "convert",
    "-f",
    "raw",
    "-O",
    "raw",
    "-t",
    "none",
    "-T",
    "none",
    "-m",
    "16",
    "-W",
    "-n",
    dev[0],
    dev[d],
  ]],
};
let nbdcopyRequest = "";

async function pickNbdcopyRequestSize() {
  let best = { size: "", rate: 0 };
  for (const size of ["", "262144", "1048576", "4194304"]) {
    await reset(1);
    const args = [...(size ? [`--request-size=${size}`] : []), dev[0], dev[1]];
    const t = await timed("nbdcopy", args);
    await checkCopy("nbdcopy", [1]);
    const rate = SIZE / GiB / t.seconds;
    if (rate > best.rate) best = { size, rate };
  }
  nbdcopyRequest = best.size;
  console.log(`nbdcopy: best --request-size ${best.size || "(default)"}`);
}

function nbdcopy(d: number): [string, string[]] {
  return ["nbdcopy", [
    ...(nbdcopyRequest ? [`--request-size=${nbdcopyRequest}`] : []),
    dev[0],
    dev[d],
  ]];
}

async function fioCeiling(nDests: number): Promise<{ seconds: number; rssKiB: number }> {
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

async function sequential(workload: string, nDests: number) {
  const dests = Array.from({ length: nDests }, (_, i) => i + 1);
  const tools: [string, () => Promise<{ seconds: number; rssKiB: number }>, boolean][] = [
    [
      "kcopyd (CLI)",
      () =>
        timed(Deno.execPath(), [
          "run",
          "--allow-all",
          CLI,
          "copy",
          dev[0],
          ...dests.map((d) => dev[d]),
          "-q",
        ]),
      true,
    ],
    ["kcopyd (library)", async () => {
      const rss = sampleRss();
      await using src = await openDevice(dev[0]);
      const outs = await Promise.all(dests.map((d) => openDevice(dev[d], { write: true })));
      await using kc = await KcopydClient.create({ waitMode: "inline" });
      const t0 = performance.now();
      const r = await kc.copy(
        { device: src, sector: 0n, count: src.sizeSectors },
        outs.map((device) => ({ device, sector: 0n })),
      );
      const seconds = (performance.now() - t0) / 1000;
      for (const o of outs) await o.close();
      if (r.readErr || r.writeErr) throw new Error("kcopyd library copy failed");
      return { seconds, rssKiB: Math.round(rss.stop() / 1024) };
    }, true],
  ];
  for (const [name, make] of Object.entries(peers)) {
    if (await has(make(1)[0])) {
      tools.push([name, async () => {
        let seconds = 0;
        let rssKiB = 0;
        for (const d of dests) {
          const [c, a] = make(d);
          const t = await timed(c, a);
          seconds += t.seconds;
          rssKiB = Math.max(rssKiB, t.rssKiB);
        }
        return { seconds, rssKiB };
      }, true]);
    }
  }
  if (await has("nbdcopy")) {
    tools.push(["nbdcopy", async () => {
      let seconds = 0;
      let rssKiB = 0;
      for (const d of dests) {
        const t = await timed(...nbdcopy(d));
        seconds += t.seconds;
        rssKiB = Math.max(rssKiB, t.rssKiB);
      }
      return { seconds, rssKiB };
    }, true]);
  }
  if (await has("fio")) {
    tools.push(["fio io_uring ceiling (read + write, no copy)", () => fioCeiling(nDests), false]);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run, verify] of tools) {
      for (const d of dests) await reset(d);
      const t = await run();
      if (verify) await checkCopy(name, dests);
      record(workload, name, "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
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
  const path = `${dir}/chunks-${chunk}.bin`;
  await Deno.writeFile(path, new Uint8Array(list.buffer));
  return { path, list };
}

async function checkChunks(tool: string, chunk: number, list: Uint32Array) {
  using a = await Deno.open(dev[0]);
  using b = await Deno.open(dev[1]);
  const x = new Uint8Array(chunk);
  const y = new Uint8Array(chunk);
  for (const c of new Set(list)) {
    await a.seek(c * chunk, Deno.SeekMode.Start);
    await b.seek(c * chunk, Deno.SeekMode.Start);
    await a.read(x);
    await b.read(y);
    if (!x.every((v, i) => v === y[i])) throw new Error(`${tool}: chunk ${c} differs`);
  }
}

async function chunks(workload: string, chunk: number, refBin: string | undefined) {
  const { path, list } = await chunkList(chunk);
  const sectors = BigInt(chunk / 512);
  for (let round = 0; round < ROUNDS; round++) {
    await reset(1);
    {
      const rss = sampleRss();
      await using src = await openDevice(dev[0]);
      await using dst = await openDevice(dev[1], { write: true });
      await using kc = await KcopydClient.create({ waitMode: "inline" });
      let next = 0;
      const t0 = performance.now();
      const worker = async () => {
        while (next < CHUNKS) {
          const c = BigInt(list[next++]) * sectors;
          const r = await kc.copy({ device: src, sector: c, count: sectors }, [{
            device: dst,
            sector: c,
          }]);
          if (r.readErr || r.writeErr) throw new Error("kcopyd chunk copy failed");
        }
      };
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      const seconds = (performance.now() - t0) / 1000;
      await dst.close();
      await checkChunks("kcopyd", chunk, list);
      record(
        workload,
        "kcopyd (library)",
        "chunks/s",
        CHUNKS / seconds,
        Math.round(rss.stop() / 1024),
      );
    }
    if (refBin) {
      await reset(1);
      const t = await timed(refBin, [dev[0], dev[1], `${chunk}`, `${IN_FLIGHT}`, path]);
      await checkChunks("C liburing", chunk, list);
      record(
        workload,
        "C liburing loop (bench/ref/chunk_copy.c)",
        "chunks/s",
        CHUNKS / t.seconds,
        t.rssKiB,
      );
    }
    // A peer run once per chunk: 64 chunks, rate extrapolated.
    const sample = 64;
    const t0 = performance.now();
    for (const c of list.subarray(0, sample)) {
      await sh("dd", [
        `if=${dev[0]}`,
        `of=${dev[1]}`,
        `bs=${chunk}`,
        `skip=${c}`,
        `seek=${c}`,
        "count=1",
        "iflag=direct",
        "oflag=direct",
        "conv=notrunc",
        "status=none",
      ]);
    }
    record(
      workload,
      "dd once per chunk (64 sampled)",
      "chunks/s",
      sample / ((performance.now() - t0) / 1000),
      0,
    );
  }
}

// ---------- W5: zero ----------

async function zero() {
  const dests = [1, 2, 3];
  for (let round = 0; round < ROUNDS; round++) {
    for (const d of dests) await sh("cp", ["--sparse=never", files[0], files[d]]); // non-zero
    const k = await timed(Deno.execPath(), [
      "run",
      "--allow-all",
      CLI,
      "zero",
      ...dests.map((d) => dev[d]),
      "-q",
    ]);
    for (const d of dests) {
      if (!(await same("/dev/zero", dev[d]))) throw new Error(`kcopyd zero: ${d} not zero`);
    }
    record(
      "W5 zero 3 destinations",
      "kcopyd (CLI)",
      "GiB/s",
      (3 * SIZE) / GiB / k.seconds,
      k.rssKiB,
    );
    for (const d of dests) await sh("cp", ["--sparse=never", files[0], files[d]]);
    let seconds = 0;
    let rss = 0;
    for (const d of dests) {
      const t = await timed("dd", [
        "if=/dev/zero",
        `of=${dev[d]}`,
        "bs=1M",
        `count=${SIZE >> 20}`,
        "oflag=direct",
        "conv=notrunc",
        "status=none",
      ]);
      seconds += t.seconds;
      rss = Math.max(rss, t.rssKiB);
    }
    for (const d of dests) {
      if (!(await same("/dev/zero", dev[d]))) throw new Error(`dd zero: ${d} not zero`);
    }
    record(
      "W5 zero 3 destinations",
      "dd if=/dev/zero, once per destination",
      "GiB/s",
      (3 * SIZE) / GiB / seconds,
      rss,
    );
    if (loops.length && (await has("blkdiscard"))) {
      for (const d of dests) await sh("cp", ["--sparse=never", files[0], files[d]]);
      let s2 = 0;
      for (const d of dests) s2 += (await timed("blkdiscard", ["-z", dev[d]])).seconds;
      record(
        "W5 zero 3 destinations",
        "blkdiscard -z, once per destination",
        "GiB/s",
        (3 * SIZE) / GiB / s2,
        0,
      );
    }
  }
}

// ---------- W6 / W7: to and from an NBD server ----------

async function nbd() {
  if (!(await has("nbdkit")) || !(await has("nbdcopy"))) {
    console.log("W6/W7 skipped: nbdkit and nbdcopy are needed");
    return;
  }
  const sock = `${dir}/nbd.sock`;
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
    // Stream the export straight into cmp: no temporary copy.
    const ok = (await sh("sh", ["-c", `nbdcopy '${uri}' - | cmp -s - '${files[0]}'`], {
      quiet: true,
    })).ok;
    if (!ok) throw new Error(`${tool}: the NBD export differs`);
  };
  const kcopyd = async (from: string, to: string) => {
    const rss = sampleRss();
    await using src = await openDevice(from);
    await using dst = await openDevice(to, { write: true });
    // Default client: completions are waited for on a worker thread, so sockets keep moving.
    await using kc = await KcopydClient.create();
    const t0 = performance.now();
    const r = await kc.copy({ device: src, sector: 0n, count: src.sizeSectors }, [
      { device: dst, sector: 0n },
    ]);
    const seconds = (performance.now() - t0) / 1000;
    if (r.readErr || r.writeErr) throw new Error("kcopyd NBD copy failed");
    return { seconds, rssKiB: Math.round(rss.stop() / 1024) };
  };
  const W6 = "W6 local → NBD (nbdkit memory)";
  const W7 = "W7 NBD → local (nbdkit memory)";
  for (let round = 0; round < ROUNDS; round++) {
    let stop = await serve();
    let t = await kcopyd(files[0], uri);
    await checkRemote("kcopyd");
    record(W6, "kcopyd (library)", "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
    await stop();
    stop = await serve();
    t = await timed("nbdcopy", [files[0], uri]);
    await checkRemote("nbdcopy");
    record(W6, "nbdcopy", "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
    // The export now holds the source: copy it back both ways.
    await reset(1);
    t = await kcopyd(uri, files[1]);
    if (!(await same(files[0], files[1]))) throw new Error("kcopyd: NBD → local differs");
    record(W7, "kcopyd (library)", "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
    await reset(1);
    t = await timed("nbdcopy", [uri, files[1]]);
    if (!(await same(files[0], files[1]))) throw new Error("nbdcopy: NBD → local differs");
    record(W7, "nbdcopy", "GiB/s", SIZE / GiB / t.seconds, t.rssKiB);
    await stop();
  }
}

// ---------- report ----------

function stats(v: number[]) {
  const s = [...v].sort((a, b) => a - b);
  return { min: s[0], med: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
}

function table(): string {
  const fmt = (v: number, unit: string) =>
    unit === "GiB/s" ? v.toFixed(2) : Math.round(v).toLocaleString("en-US");
  const lines = [
    "| workload | tool | min | median | max | unit | vs kcopyd | peak RSS |",
    "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
  ];
  const byWorkload = new Map<string, Row[]>();
  for (const r of rows.values()) {
    byWorkload.set(r.workload, [...(byWorkload.get(r.workload) ?? []), r]);
  }
  for (const [w, rs] of byWorkload) {
    const base = rs.find((r) => r.tool.startsWith("kcopyd (library)")) ??
      rs.find((r) => r.tool.startsWith("kcopyd"));
    const baseMed = base ? stats(base.values).med : 0;
    for (const r of rs) {
      const s = stats(r.values);
      const rss = Math.max(...r.rssKiB);
      lines.push(
        `| ${w} | ${r.tool} | ${fmt(s.min, r.unit)} | ${fmt(s.med, r.unit)} | ${
          fmt(s.max, r.unit)
        } | ${r.unit} | ` +
          `${baseMed ? (s.med / baseMed).toFixed(2) + "×" : ""} | ${
            rss ? (rss / 1024).toFixed(0) + " MiB" : "n/a"
          } |`,
      );
    }
  }
  return lines.join("\n");
}

const started = performance.now();
try {
  await ensureTools();
  await setup();
  let refBin: string | undefined;
  if (await has("cc")) {
    refBin = `${dir}/chunk_copy`;
    const src = new URL("./ref/chunk_copy.c", import.meta.url).pathname;
    const ok = (await sh("cc", ["-O2", "-o", refBin, src, "-luring"], { quiet: true })).ok;
    if (!ok) refBin = undefined;
  }
  if (await has("nbdcopy")) await pickNbdcopyRequestSize();
  console.log("W1 ...");
  await sequential("W1 copy 1 → 1", 1);
  console.log("W2 ...");
  await sequential("W2 copy 1 → 3 (source rate)", 3);
  console.log("W3 ...");
  await chunks("W3 16 384 random 64 KiB chunks, 2 048 in flight", 65536, refBin);
  console.log("W4 ...");
  await chunks("W4 16 384 random 4 KiB chunks, 2 048 in flight", 4096, refBin);
  console.log("W5 ...");
  await zero();
  console.log("W6/W7 ...");
  await nbd();
  const kernel = (await sh("uname", ["-r"])).text.trim();
  const header = [
    `Measured ${
      new Date().toISOString().slice(0, 10)
    } on ${navigator.hardwareConcurrency} cores, Linux ${kernel}, ` +
    `${SIZE / GiB} GiB per device, ${ROUNDS} rounds, ${
      loops.length ? "tmpfs-backed loop devices, direct I/O" : "plain files"
    }.`,
    `Command: \`deno task bench:compare --size ${values.size} --rounds ${ROUNDS}\` (${
      ((performance.now() - started) / 1000).toFixed(0)
    } s).`,
    "Peers with one output run once per destination (W2, W5: their total time). Every copy was checked before its time counted.",
  ].join("\n");
  const md = `${header}\n\n${table()}\n`;
  console.log("\n" + md);
  await Deno.writeTextFile(values.out!, md);
  console.log(`written to ${values.out}`);
} finally {
  await cleanup();
}
