/**
 * The hot path for the commonest job (how dm-snapshot drives kcopyd): one chunk to one
 * destination, with no throttle, ordering or flush. The page grant, the read and the write are
 * chained by callbacks (the read and the write inside the kernel, as linked SQEs, when both
 * devices are local): no Job object and no Promise per I/O, also while waiting for pages.
 *
 * @module
 */
import { Errno, errnoName } from "./errno.ts";
import type { JobEngine } from "./job.ts";
import { PAGE_SIZE } from "./page_pool.ts";
import type { Range } from "./region.ts";
import type { CopyResult } from "./types.ts";

/**
 * Starts a one-chunk copy if the job qualifies; it waits for pages (FIFO) like any job.
 *
 * @param engine The client's shared parts.
 * @param src The checked source range.
 * @param dest The checked destination range.
 * @param finish Receives the result, always from the event loop.
 * @param general Runs the job on the general path instead: called (after the pages were given
 *   back) when the read failed or came back short, so bad sectors are narrowed down there.
 * @returns False when the job does not qualify (nothing was started).
 */
export function startSmallCopy(
  engine: JobEngine,
  src: Range,
  dest: Range,
  finish: (result: CopyResult) => void,
  general: () => void,
): boolean {
  const len = src.length;
  if (len === 0 || len > engine.chunkBytes || !engine.throttle.unlimited) return false;
  const sep = engine.endpoint(src);
  const dep = engine.endpoint(dest);
  if (!sep.readCb || !dep.writeCb) return false;
  const pool = engine.pool;
  // Waiting for pages costs a small record here, not a Job: thousands may wait at once.
  pool.acquireCb(Math.ceil(len / PAGE_SIZE), (run) => {
    let written = 0;
    const wrote = (res: number) => {
      if (res > 0 && written + res < len) {
        written += res; // a short write: write the rest
        dep.writeCb!(run.address + written, len - written, dest.offset + written, wrote);
        return;
      }
      pool.release(run);
      if (res > 0) return finish({ readErr: false, writeErr: 0, errors: [] });
      finish({
        readErr: false,
        writeErr: 1,
        errors: [{
          dest: 0,
          sector: dest.sector + BigInt(Math.floor(written / 512)),
          count: BigInt(Math.ceil((len - written) / 512)),
          code: errnoName(res === 0 ? Errno.ENOSPC : -res),
        }],
      });
    };
    const chained = sep.copyToCb?.(dep, run.address, len, src.offset, dest.offset, (r, w) => {
      if (r === len) return wrote(w);
      pool.release(run);
      general();
    });
    if (chained) return;
    sep.readCb!(run.address, len, src.offset, (res) => {
      if (res === len) return dep.writeCb!(run.address, len, dest.offset, wrote);
      pool.release(run);
      general();
    });
  });
  return true;
}
