// `deno task demo`: makes its own devices in a temp dir (image files with random data; as root
// also attached as loop devices), copies the source to two mirrors with the kcopyd command
// (progress bar on a terminal), verifies them, zeroes a range, prints a summary with
// throughput, and cleans up after itself, also after Ctrl-C or SIGTERM.
//
//   deno run --allow-all tools/demo.ts [--files] [--size 256M]
//   --files  use plain image files even as root (what a non-root user gets)
import { createHash, randomFillSync } from "node:crypto";
import { parseArgs } from "node:util";
import { main as kcopyd } from "../cli.ts";
import { parseBytes } from "../lib/cli/units.ts";

const flags = parseArgs({
  args: Deno.args,
  options: { files: { type: "boolean" }, size: { type: "string", default: "256M" } },
});
const SIZE = Number(parseBytes(flags.values.size, "--size"));
const loops: string[] = [];
let dir = "";
let signal: "SIGINT" | "SIGTERM" | undefined;

class Interrupted extends Error {}

function checkpoint(): void {
  if (signal) throw new Interrupted(signal);
}

async function sh(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout).trim();
}

async function cleanup(): Promise<void> {
  for (const l of loops.splice(0)) await sh("losetup", "-d", l).catch(() => {});
  if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  dir = "";
}

async function useLoops(): Promise<boolean> {
  if (flags.values.files || Deno.uid() !== 0) return false;
  return await sh("losetup", "--version").then(() => true, () => false);
}

async function hashRange(path: string, offset: number, length: number): Promise<string> {
  using f = await Deno.open(path);
  await f.seek(offset, Deno.SeekMode.Start);
  const h = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  let left = length;
  while (left > 0) {
    const n = await f.read(buf.subarray(0, Math.min(buf.length, left)));
    if (n === null) break;
    h.update(buf.subarray(0, n));
    left -= n;
  }
  return h.digest("hex");
}

function gib(bytes: number, ms: number): string {
  return `${(bytes / 2 ** 30 / (ms / 1000)).toFixed(2)} GiB/s`;
}

/** Runs a kcopyd command in this process; a signal makes it stop by itself with 130/143. */
async function run(args: string[]): Promise<number> {
  const code = await kcopyd(args);
  checkpoint();
  return code;
}

async function demo(): Promise<void> {
  dir = await Deno.makeTempDir({
    dir: await Deno.stat("/dev/shm").then(() => "/dev/shm", () => "/var/tmp"),
    prefix: "kcopyd-demo-",
  });
  const files = ["source.img", "mirror-a.img", "mirror-b.img"].map((n) => `${dir}/${n}`);
  const data = new Uint8Array(1 << 20);
  {
    using out = await Deno.open(files[0], { write: true, create: true });
    for (let i = 0; i < SIZE; i += data.length) {
      checkpoint();
      randomFillSync(data);
      await out.write(data.subarray(0, Math.min(data.length, SIZE - i)));
    }
  }
  for (const f of files.slice(1)) {
    await Deno.writeFile(f, new Uint8Array(0));
    await Deno.truncate(f, SIZE);
  }
  let paths = files;
  if (await useLoops()) {
    paths = [];
    for (const f of files) {
      checkpoint();
      const l = await sh("losetup", "--find", "--show", f);
      loops.push(l);
      paths.push(l);
    }
    console.log(`devices: loop devices ${paths.join(", ")} over images in ${dir}`);
  } else {
    console.log(`devices: image files in ${dir} (run as root to use loop devices)`);
  }

  // The same commands a person would type, with the progress bar when stderr is a terminal.
  const src = paths[0];
  let t = performance.now();
  let code = await run(["copy", src, paths[1], paths[2], "--flush"]);
  const copyMs = performance.now() - t;
  if (code !== 0) throw new Error(`kcopyd copy failed with exit code ${code}`);
  console.log(
    `copy:   ${SIZE >> 20} MiB → 2 mirrors, ${gib(SIZE, copyMs)} (read once, written twice)`,
  );
  t = performance.now();
  code = await run(["verify", src, paths[1], paths[2]]);
  const verifyMs = performance.now() - t;
  if (code !== 0) throw new Error("a mirror differs from the source");
  const want = await hashRange(files[0], 0, SIZE);
  for (const f of files.slice(1)) {
    checkpoint();
    const got = await hashRange(f, 0, SIZE);
    console.log(
      `sha256: ${f.split("/").pop()} ${got.slice(0, 16)}… ${
        got === want ? "matches the source" : "DIFFERS"
      }`,
    );
    if (got !== want) throw new Error("mirror differs from source");
  }
  t = performance.now();
  code = await run(["zero", `${paths[1]}:2048+4MiB`, "--quiet"]);
  const zeroMs = performance.now() - t;
  const zeroed = await hashRange(files[1], 2048 * 512, 8192 * 512);
  const zeros = createHash("sha256").update(new Uint8Array(8192 * 512)).digest("hex");
  console.log(
    `zero:   4 MiB at sector 2048 of mirror-a in ${zeroMs.toFixed(1)} ms; ` +
      `${zeroed === zeros && code === 0 ? "reads back as zeros" : "NOT ZERO"}`,
  );
  console.log(
    `summary: copy ${gib(SIZE, copyMs)}, verify ${gib(SIZE, verifyMs)}, both mirrors ` +
      `verified, zeroing checked`,
  );
}

const onSignal = (sig: "SIGINT" | "SIGTERM") => () => {
  // The kcopyd command in flight sees the signal too and stops by itself; the demo then
  // cleans up at its next checkpoint.
  if (!signal) console.error(`\ndemo: ${sig}: stopping and cleaning up`);
  signal ??= sig;
};
Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));
try {
  await demo();
} catch (err) {
  if (!(err instanceof Interrupted)) {
    console.error(`demo: ${(err as Error).message}`);
    Deno.exitCode = 1;
  }
} finally {
  await cleanup();
}
if (signal) {
  console.error("demo: interrupted; its devices and images are removed");
  Deno.exitCode = signal === "SIGINT" ? 130 : 143;
}
