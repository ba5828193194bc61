/**
 * Byte-for-byte comparison of a source region with destination regions, through the same
 * ring and device endpoints the copy engine uses, reading all sides in parallel.
 *
 * @module
 */
import type { BlockDevice } from "../block_device.ts";
import { BufferPool } from "../buffers.ts";
import { errnoName } from "../errno.ts";
import { Ring } from "../ring.ts";

/** What differs on one destination. */
export interface CompareResult {
  /** First differing sector, absolute on the destination device. */
  firstDiff?: bigint;
  /** Number of differing 512-byte sectors. */
  diffSectors: bigint;
  /** An errno name when reading failed (the unread sectors count as differing). */
  error?: string;
}

/** Options for {@linkcode compareRegions}. */
export interface CompareOptions {
  /** Bytes per read. Default 1 MiB. */
  chunkBytes?: number;
  /** Chunks compared at once. Default 4. */
  parallel?: number;
  /** Called with source bytes compared so far. */
  onProgress?: (bytes: number) => void;
  /** Stop early when this returns true (e.g. after Ctrl-C). */
  stopped?: () => boolean;
}

/**
 * Compares `count` sectors of `source` from `sector` with each destination from its sector.
 *
 * @param source Device and first sector.
 * @param dests Devices and first sectors.
 * @param count Sectors to compare.
 * @param options Chunk size, parallelism, progress.
 * @returns One result per destination.
 */
export async function compareRegions(
  source: { device: BlockDevice; sector: bigint },
  dests: { device: BlockDevice; sector: bigint }[],
  count: bigint,
  options: CompareOptions = {},
): Promise<CompareResult[]> {
  const chunk = options.chunkBytes ?? 1 << 20;
  const parallel = options.parallel ?? 4;
  const sides = [source, ...dests];
  await using ring = Ring.create({ entries: 256, waitMode: "inline" });
  using pool = new BufferPool(parallel * sides.length, chunk);
  const endpoints = sides.map((s) => s.device.endpoint(ring));
  const results: CompareResult[] = dests.map(() => ({ diffSectors: 0n }));
  const total = Number(count * 512n);
  let next = 0;
  let done = 0;

  const worker = async (w: number) => {
    const bufs = sides.map((_, i) => pool.get(w * sides.length + i));
    while (next < total && !options.stopped?.()) {
      const off = next;
      const len = Math.min(chunk, total - off);
      next += len;
      const res = await Promise.all(sides.map(async (s, i) => {
        let got = 0;
        while (got < len) {
          const r = await endpoints[i].read(
            bufs[i].address + got,
            len - got,
            Number(s.sector * 512n) + off + got,
          );
          if (r <= 0) return r === 0 ? -5 : r;
          got += r;
        }
        return 0;
      }));
      const sectors = len / 512;
      for (let d = 0; d < dests.length; d++) {
        const r = results[d];
        const bad = res[0] < 0 ? res[0] : res[d + 1];
        if (bad < 0) {
          r.error ??= errnoName(-bad);
          r.diffSectors += BigInt(sectors);
          const at = dests[d].sector + BigInt(off / 512);
          if (r.firstDiff === undefined || at < r.firstDiff) r.firstDiff = at;
          continue;
        }
        const a = new Int32Array(bufs[0].bytes.buffer, bufs[0].bytes.byteOffset, len / 4);
        const b = new Int32Array(bufs[d + 1].bytes.buffer, bufs[d + 1].bytes.byteOffset, len / 4);
        for (let s = 0; s < sectors; s++) {
          const base = s * 128;
          let same = true;
          for (let k = 0; k < 128; k++) {
            if (a[base + k] !== b[base + k]) {
              same = false;
              break;
            }
          }
          if (!same) {
            r.diffSectors++;
            const at = dests[d].sector + BigInt(off / 512 + s);
            if (r.firstDiff === undefined || at < r.firstDiff) r.firstDiff = at;
          }
        }
      }
      done += len;
      options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: parallel }, (_, w) => worker(w)));
  return results;
}
