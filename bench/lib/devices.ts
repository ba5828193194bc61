// The devices of the benchmarks: a random source and destinations of one size, as loop devices
// over files in /dev/shm when root (direct I/O), otherwise as the plain files.
import { makeImage } from "../../tests/support/image.ts";
import { has, sh } from "./exec.ts";

/** What destinations hold before each copy: never the random source. */
export const PATTERN = 0xa5;

/** Bench devices: `dev[0]` is the source, the rest are destinations. */
export interface BenchDevices {
  /** Backing files (the truth to check), index for index with `dev`. */
  readonly files: string[];
  /** What the tools are given: loop devices, or the files themselves. */
  readonly dev: string[];
  /** True when `dev` are loop devices. */
  readonly loops: boolean;
  readonly dir: string;
  /** Fills destinations with the pattern and drops stale block-device cache. */
  reset(ds: number[]): Promise<void>;
  /** Writes back and drops what tools left in the devices' page cache. */
  settle(ds: number[]): Promise<void>;
  /** Detaches the loop devices and removes the files. */
  cleanup(): Promise<void>;
}

/** Fills a file with one byte value, allocating all of it (no holes). */
export async function fillFile(path: string, size: number, byte = PATTERN): Promise<void> {
  using f = await Deno.open(path, { write: true, create: true });
  const buf = new Uint8Array(4 << 20).fill(byte);
  for (let off = 0; off < size; off += buf.length) {
    const part = buf.subarray(0, Math.min(buf.length, size - off));
    let w = 0;
    while (w < part.length) w += f.writeSync(part.subarray(w));
  }
}

/**
 * Makes `1 + nDests` devices of `size` bytes: the source holds seeded random data, each
 * destination the pattern (written, so that no copy pays for allocating tmpfs pages).
 */
export async function makeDevices(size: number, nDests: number): Promise<BenchDevices> {
  const root = Deno.uid() === 0;
  const dir = await Deno.makeTempDir({
    dir: root ? "/dev/shm" : undefined,
    prefix: "kcopyd-bench-",
  });
  const files = [`${dir}/src.img`, ...Array.from({ length: nDests }, (_, i) => `${dir}/d${i}.img`)];
  await Deno.rename(await makeImage(size, { seed: 42, dir }), files[0]);
  for (const f of files.slice(1)) await fillFile(f, size);
  const loops: string[] = [];
  if (root && (await has("losetup"))) {
    for (const f of files) {
      loops.push((await sh("losetup", ["--find", "--show", "--direct-io=on", f])).stdout.trim());
    }
  }
  const dev = loops.length ? loops : files;
  const settle = async (ds: number[]) => {
    if (loops.length) await Promise.all(ds.map((d) => sh("blockdev", ["--flushbufs", dev[d]])));
  };
  return {
    files,
    dev,
    loops: loops.length > 0,
    dir,
    settle,
    async reset(ds) {
      for (const d of ds) await fillFile(files[d], size);
      await settle(ds);
    },
    async cleanup() {
      for (const l of loops.splice(0)) await sh("losetup", ["-d", l], { quiet: true });
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
