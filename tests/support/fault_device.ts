// Real block devices with real faults: nbdkit serves an image (with the ddrescue filter for
// unreadable sectors, the error filter for failing writes, or the full plugin for ENOSPC),
// nbdfuse exposes it as a file, and losetup (direct I/O) turns that into /dev/loopN.
import { attachLoop, canUseLoop, type Loop } from "./loop.ts";
import { hasCommand, run, waitFor } from "./run.ts";

/** Options for {@linkcode faultDevice}. */
export interface FaultDeviceOptions {
  /** The image to serve (kept); or `bytes` for a new zero-filled one. */
  image?: string;
  /** Size of a new image in bytes (default 4 MiB). */
  bytes?: number;
  /** Unreadable byte ranges `[offset, length]` (multiples of 512): reads there fail with EIO. */
  badReads?: [number, number][];
  /** Every write fails with this errno name once `failWrites()` was called (or at once). */
  writeError?: "EIO" | "ENOSPC";
  /** Start failing writes at once (default: only after `failWrites()`). */
  failWritesNow?: boolean;
  /** Serve nbdkit's `full` plugin: reads return zeros, every write fails with ENOSPC. */
  full?: boolean;
  /** Record every request in `logFile` (nbdkit's log filter). */
  log?: boolean;
  /** Logical sector size of the loop device (default 512). */
  sectorSize?: number;
}

/** A faulty block device; everything is torn down on dispose. */
export interface FaultDevice extends AsyncDisposable {
  /** `/dev/loopN`. */
  readonly path: string;
  /** The image behind it (absent for `full`). */
  readonly image: string | undefined;
  /** nbdkit's log, with `log: true`. */
  readonly logFile: string | undefined;
  /** Makes every later write fail (with `writeError`). */
  failWrites(): Promise<void>;
}

/** Whether fault devices can be made here, and if not, why. */
export async function canUseFaults(): Promise<{ ok: boolean; reason: string }> {
  const loop = await canUseLoop();
  if (!loop.ok) return loop;
  for (const tool of ["nbdkit", "nbdfuse", "fusermount3"]) {
    if (!(await hasCommand(tool))) {
      return { ok: false, reason: `${tool} is missing (apt-get install nbdkit libnbd-bin fuse3)` };
    }
  }
  if (!(await Deno.stat("/dev/fuse").then(() => true, () => false))) {
    return { ok: false, reason: "/dev/fuse is missing" };
  }
  return { ok: true, reason: "" };
}

function hex(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}

/** A ddrescue mapfile marking `bad` as unreadable ("-") and the rest as rescued ("+"). */
function mapfile(size: number, bad: [number, number][]): string {
  const lines = ["# Mapfile for a kcopyd test", "0x00000000     +               1"];
  lines.push("#      pos        size  status");
  let at = 0;
  for (const [off, len] of [...bad].sort((a, b) => a[0] - b[0])) {
    if (off > at) lines.push(`${hex(at)}  ${hex(off - at)}  +`);
    lines.push(`${hex(off)}  ${hex(len)}  -`);
    at = off + len;
  }
  if (at < size) lines.push(`${hex(at)}  ${hex(size - at)}  +`);
  return lines.join("\n") + "\n";
}

/** Makes a faulty block device. Requires root, nbdkit, nbdfuse and /dev/fuse. */
export async function faultDevice(options: FaultDeviceOptions = {}): Promise<FaultDevice> {
  const dir = await Deno.makeTempDir({ prefix: "kcopyd-fault-" });
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  const bytes = options.bytes ?? 4 << 20;
  let image = options.image;
  if (!image && !options.full) {
    image = `${dir}/image`;
    await Deno.writeFile(image, new Uint8Array(0));
    await Deno.truncate(image, bytes);
  }
  const trigger = `${dir}/fail-writes`;
  if (options.failWritesNow) await Deno.writeFile(trigger, new Uint8Array(0));
  const logFile = options.log ? `${dir}/nbdkit.log` : undefined;

  const server = ["nbdkit", "--exit-with-parent"];
  const params: string[] = [];
  if (logFile) {
    // Outermost, so failed requests are logged too.
    server.push("--filter=log");
    params.push(`logfile=${logFile}`);
  }
  if (options.badReads?.length) {
    const map = `${dir}/mapfile`;
    const size = (await Deno.stat(image!)).size;
    await Deno.writeTextFile(map, mapfile(size, options.badReads));
    server.push("--filter=ddrescue");
    params.push(`ddrescue-mapfile=${map}`);
  }
  if (options.writeError) {
    server.push("--filter=error");
    params.push(
      `error-pwrite=${options.writeError}`,
      "error-pwrite-rate=100%",
      `error-pwrite-file=${trigger}`,
    );
  }
  if (options.full) server.push("full", `size=${bytes}`);
  else server.push("file", image!);
  server.push(...params);

  const fuse = new Deno.Command("nbdfuse", {
    args: [`${mnt}/disk`, "--socket-activation", ...server],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let loop: Loop | undefined;
  const teardown = async () => {
    if (loop) await loop[Symbol.asyncDispose]();
    await run("fusermount3", "-u", mnt).catch(() => {});
    const timer = setTimeout(() => {
      try {
        fuse.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await fuse.output().catch(() => {});
    clearTimeout(timer);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitFor(
      () => Deno.stat(`${mnt}/disk`).then((s) => s.isFile, () => false),
      10_000,
      "nbdfuse to mount",
    );
    loop = await attachLoop(`${mnt}/disk`, { directIo: true, sectorSize: options.sectorSize });
  } catch (err) {
    await teardown();
    throw err;
  }
  return {
    path: loop.path,
    image,
    logFile,
    async failWrites() {
      await Deno.writeFile(trigger, new Uint8Array(0));
    },
    [Symbol.asyncDispose]: teardown,
  };
}
