/**
 * Byte-for-byte comparison of a source region with destination regions, through the same
 * ring and device endpoints the copy engine uses: each chunk is read from every side in
 * parallel, several chunks at a time, and compared with `memcmp` (per sector only where a
 * chunk differs).
 *
 * @module
 */
import { Buffer } from "node:buffer";
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

/** The outcome of {@linkcode compareRegions}. */
export interface Comparison {
  /** One result per destination. */
  results: CompareResult[];
  /** Sectors from the start of every region compared without a gap (all of them unless stopped). */
  comparedSectors: bigint;
}

/** Options for {@linkcode compareRegions}. */
export interface CompareOptions {
  /** Bytes per read. Default 1 MiB. */
  chunkBytes?: number;
  /** Chunks compared at once. Default 4. */
  parallel?: number;
  /** Called with source bytes compared so far. */
  onProgress?: (bytes: number) => void;
  /** Stop early (after the chunks in flight) when this returns true, e.g. after Ctrl-C. */
  stopped?: () => boolean;
}

/**
 * Compares `count` sectors of `source` from its sector with each destination from its sector.
 *
 * @param source Device and first sector.
 * @param dests Devices and first sectors.
 * @param count Sectors to compare.
 * @param options Chunk size, parallelism, progress, early stop.
 * @returns One result per destination, and how far the comparison got.
 * @throws {UringError} / {LiburingLoadError} When the ring cannot be set up.
 * @example
 * ```ts ignore
 * const { results } = await compareRegions({ device: src, sector: 0n }, [
 *   { device: dst, sector: 8n },
 * ], 2048n);
 * console.log(results[0].diffSectors, results[0].firstDiff); // 0n undefined
 * ```
 */
export async function compareRegions(
  source: { device: BlockDevice; sector: bigint },
  dests: { device: BlockDevice; sector: bigint }[],
  count: bigint,
  options: CompareOptions = {},
): Promise<Comparison> {
  const chunk = options.chunkBytes ?? 1 << 20;
  const parallel = options.parallel ?? 4;
  const sides = [source, ...dests];
  // Inline waits block the event loop, which NBD sockets need.
  const remote = sides.some((s) => s.device.kind !== "local");
  await using ring = Ring.create({ entries: 256, waitMode: remote ? "worker" : "inline" });
  using pool = new BufferPool(parallel * sides.length, chunk);
  const endpoints = sides.map((s) => s.device.endpoint(ring));
  const results: CompareResult[] = dests.map(() => ({ diffSectors: 0n }));
  const total = count * 512n;
  let next = 0n;
  let done = 0;
  let prefix = 0n; // bytes compared without a gap
  const finished = new Set<bigint>();

  const differ = (r: CompareResult, at: bigint, sectors: bigint) => {
    r.diffSectors += sectors;
    if (r.firstDiff === undefined || at < r.firstDiff) r.firstDiff = at;
  };

  const worker = async (w: number) => {
    const bufs = sides.map((_, i) => pool.get(w * sides.length + i));
    const views = bufs.map((b) => Buffer.from(b.bytes.buffer, b.bytes.byteOffset, chunk));
    while (next < total && !options.stopped?.()) {
      const off = next;
      const len = Number(total - off < BigInt(chunk) ? total - off : BigInt(chunk));
      next += BigInt(len);
      const res = await Promise.all(sides.map(async (s, i) => {
        const base = s.sector * 512n + off;
        let got = 0;
        while (got < len) {
          const r = await endpoints[i].read(bufs[i].address + got, len - got, Number(base) + got);
          if (r <= 0) return r === 0 ? -5 : r; // a short device reads as EIO
          got += r;
        }
        return 0;
      }));
      const firstSector = off / 512n;
      for (let d = 0; d < dests.length; d++) {
        const r = results[d];
        const bad = res[0] < 0 ? res[0] : res[d + 1];
        if (bad < 0) {
          r.error ??= errnoName(-bad);
          differ(r, dests[d].sector + firstSector, BigInt(len / 512));
          continue;
        }
        if (views[0].compare(views[d + 1], 0, len, 0, len) === 0) continue;
        for (let s = 0; s < len; s += 512) {
          if (views[0].compare(views[d + 1], s, s + 512, s, s + 512) !== 0) {
            differ(r, dests[d].sector + firstSector + BigInt(s / 512), 1n);
          }
        }
      }
      finished.add(off);
      while (finished.delete(prefix)) prefix += BigInt(Math.min(chunk, Number(total - prefix)));
      done += len;
      options.onProgress?.(done);
    }
  };
  await Promise.all(Array.from({ length: parallel }, (_, w) => worker(w)));
  return { results, comparedSectors: prefix / 512n };
}
