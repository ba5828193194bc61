import { createHash } from "node:crypto";

/** A 32-bit xorshift generator: deterministic bytes for a seed. */
function fill(buf: Uint8Array, seed: number): void {
  const w = new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >> 2);
  let x = seed | 0 || 0x9e3779b9;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x;
  }
}

/**
 * Makes an image file of `bytes` (a multiple of 4) filled with deterministic pseudo-random data
 * for `seed`, or with `byte` when given. In /dev/shm by default.
 */
export async function makeImage(
  bytes: number,
  options: { seed?: number; byte?: number; dir?: string } = {},
): Promise<string> {
  const dir = options.dir ?? "/dev/shm";
  const path = await Deno.makeTempFile({ dir, prefix: "kcopyd-test-", suffix: ".img" });
  using f = await Deno.open(path, { write: true });
  const block = new Uint8Array(Math.min(bytes, 1 << 20));
  let seed = options.seed ?? 1;
  for (let done = 0; done < bytes; done += block.length) {
    const n = Math.min(block.length, bytes - done);
    if (options.byte !== undefined) block.fill(options.byte);
    else fill(block, seed++ * 2654435761);
    let w = 0;
    while (w < n) w += await f.write(block.subarray(w, n));
  }
  return path;
}

/** Reads `length` bytes at `offset` of a file or device. */
export async function readRange(path: string, offset: number, length: number): Promise<Uint8Array> {
  using f = await Deno.open(path);
  await f.seek(offset, Deno.SeekMode.Start);
  const out = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const n = await f.read(out.subarray(got));
    if (n === null) break;
    got += n;
  }
  return out.subarray(0, got);
}

/** SHA-256 (hex) of `length` bytes at `offset` (default: the whole file). */
export async function sha256File(path: string, offset = 0, length?: number): Promise<string> {
  using f = await Deno.open(path);
  await f.seek(offset, Deno.SeekMode.Start);
  const h = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  let left = length ?? Infinity;
  while (left > 0) {
    const n = await f.read(buf.subarray(0, Math.min(buf.length, left)));
    if (n === null) break;
    h.update(buf.subarray(0, n));
    left -= n;
  }
  return h.digest("hex");
}

/** SHA-256 (hex) of bytes. */
export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
