/**
 * One kcopyd job: a copy (read once, write to every destination) or a zero. The job is split
 * into chunks of at most the sub-job size; up to `splitCount` sub-jobs take the next chunk
 * from the job's cursor, each holding pool pages for its chunk while it is in flight.
 *
 * @module
 */
import type { Endpoint } from "./endpoint.ts";
import { Errno, errnoName } from "./errno.ts";
import { PAGE_SIZE, type PagePool, type PageRun } from "./page_pool.ts";
import type { Range } from "./region.ts";
import type { Throttle } from "./throttle.ts";
import { type CopyErrorEntry, type CopyResult, KcopydFlags } from "./types.ts";

/** What a job needs from its client. */
export interface JobEngine {
  readonly pool: PagePool;
  readonly throttle: Throttle;
  /** Chunk size in bytes (≤ pool size). */
  readonly chunkBytes: number;
  readonly splitCount: number;
  /** A shared, zero-filled native buffer for zeroing by writes. */
  readonly zeroBuffer: { address: number; byteLength: number };
  endpoint(range: Range): Endpoint;
}

/** Largest single fallocate(ZERO_RANGE) a zero job issues. */
const ZERO_PIECE = 64 << 20;

interface Seq {
  next: number;
  waiting: Map<number, () => void>;
}

interface Outcome {
  done: number;
  res: number;
}

/** Runs one job to completion; never rejects for I/O errors. */
export class Job {
  readonly #engine: JobEngine;
  readonly #source: Range | undefined;
  readonly #dests: Range[];
  readonly #ignore: boolean;
  readonly #seq: Seq[] | undefined;
  readonly #flush: boolean;
  readonly #errors: CopyErrorEntry[] = [];
  #readErr = false;
  #writeErr = 0;
  #cursor = 0;
  #next = 0;
  #stopped = false;
  #stopAt = Infinity;
  /** Source bytes finished (read and written everywhere), for progress. */
  bytesDone = 0;

  /**
   * Prepares a job; nothing runs until `run()`.
   *
   * @param engine The client's shared parts.
   * @param source The source range (copy), or undefined (zero).
   * @param dests Destination ranges.
   * @param flags Checked {@linkcode KcopydFlags}.
   * @param flush Flush every destination before completing.
   */
  constructor(
    engine: JobEngine,
    source: Range | undefined,
    dests: Range[],
    flags: number,
    flush: boolean,
  ) {
    this.#engine = engine;
    this.#source = source;
    this.#dests = dests;
    this.#ignore = (flags & KcopydFlags.IGNORE_ERROR) !== 0;
    this.#seq = flags & KcopydFlags.WRITE_SEQ
      ? dests.map(() => ({ next: 0, waiting: new Map() }))
      : undefined;
    this.#flush = flush;
  }

  /** Runs the job and reports what happened. */
  async run(): Promise<CopyResult> {
    if (this.#source) await this.#copy(this.#source);
    else await this.#zero();
    if (this.#flush) await this.#flushAll();
    return this.#result();
  }

  #result(): CopyResult {
    this.#errors.sort((a, b) =>
      (a.dest ?? -1) - (b.dest ?? -1) || (a.sector < b.sector ? -1 : a.sector > b.sector ? 1 : 0)
    );
    return { readErr: this.#readErr, writeErr: this.#writeErr, errors: this.#errors };
  }

  #stop(at: number): void {
    this.#stopped = true;
    if (at < this.#stopAt) this.#stopAt = at;
  }

  // ---- copy ----

  async #copy(source: Range): Promise<void> {
    const total = source.length;
    if (total === 0) return;
    const chunk = this.#engine.chunkBytes;
    const workers = Math.min(this.#engine.splitCount, Math.ceil(total / chunk));
    if (workers === 1) return await this.#subJob(source, chunk);
    const subJobs: Promise<void>[] = [];
    for (let i = 0; i < workers; i++) subJobs.push(this.#subJob(source, chunk));
    await Promise.all(subJobs);
  }

  async #subJob(source: Range, chunk: number): Promise<void> {
    const pool = this.#engine.pool;
    const total = source.length;
    for (;;) {
      if (this.#stopped || this.#cursor >= total) return;
      const want = Math.min(chunk, total - this.#cursor);
      const pages = Math.ceil(want / PAGE_SIZE);
      const run = pool.tryAcquire(pages) ?? await pool.acquire(pages);
      if (this.#stopped || this.#cursor >= total) {
        pool.release(run);
        return;
      }
      const off = this.#cursor;
      const len = Math.min(want, total - off);
      this.#cursor += len;
      const idx = this.#next++;
      try {
        await this.#copyChunk(source, idx, off, len, run);
      } finally {
        pool.release(run);
      }
    }
  }

  async #copyChunk(
    source: Range,
    idx: number,
    off: number,
    len: number,
    run: PageRun,
  ): Promise<void> {
    const ep = this.#engine.endpoint(source);
    const r = await this.#readFull(ep, run.address, len, source.offset + off);
    let readFailed = false;
    // A failed read may be a merged request that also covered good sectors: only the logical
    // blocks that fail again on their own count as unreadable.
    if (r.res < 0 && await this.#locateBadSectors(ep, source, run, off, r.done, len) > 0) {
      readFailed = true;
      this.#readErr = true;
      if (!this.#ignore) this.#stop(idx);
    }
    const skip = readFailed && !this.#ignore;
    const dests = this.#dests;
    if (dests.length === 1) await this.#writeChunk(dests[0], 0, idx, off, len, run, skip);
    else await Promise.all(dests.map((d, i) => this.#writeChunk(d, i, idx, off, len, run, skip)));
    if (!skip) this.bytesDone += len;
  }

  async #writeChunk(
    dest: Range,
    i: number,
    idx: number,
    off: number,
    len: number,
    run: PageRun,
    skip: boolean,
  ): Promise<void> {
    const seq = this.#seq?.[i];
    if (seq && seq.next !== idx) await new Promise<void>((r) => seq.waiting.set(idx, r));
    try {
      if (skip || (seq && idx >= this.#stopAt)) return;
      const ep = this.#engine.endpoint(dest);
      const w = await this.#writeFull(ep, run.address, len, dest.offset + off);
      if (w.res < 0) this.#writeFailed(i, dest, off + w.done, len - w.done, w.res, idx);
    } finally {
      if (seq) {
        seq.next++;
        const wake = seq.waiting.get(seq.next);
        if (wake) {
          seq.waiting.delete(seq.next);
          wake();
        }
      }
    }
  }

  #writeFailed(i: number, dest: Range, off: number, len: number, res: number, idx: number): void {
    this.#writeErr |= 1 << i;
    this.#errors.push({
      dest: i,
      sector: dest.sector + BigInt(Math.floor(off / 512)),
      count: BigInt(Math.ceil(len / 512)),
      code: errnoName(-res),
    });
    if (!this.#ignore) this.#stop(idx + 1);
  }

  /**
   * A read failed after `done` good bytes: find the unreadable logical blocks by bisection,
   * zero them in the buffer, and report them. The halves are read one after the other so the
   * block layer cannot merge them into one failing request again.
   *
   * @returns The number of unreadable bytes found.
   */
  async #locateBadSectors(
    ep: Endpoint,
    source: Range,
    run: PageRun,
    off: number,
    done: number,
    len: number,
  ): Promise<number> {
    const lbs = source.device.logicalBlockSize;
    const bad: [number, number, number][] = [];
    const scan = async (start: number, end: number): Promise<void> => {
      const r = await this.#readFull(
        ep,
        run.address + start,
        end - start,
        source.offset + off + start,
      );
      if (r.res >= 0) return;
      const s = start + Math.floor(r.done / lbs) * lbs;
      if (end - s <= lbs) {
        bad.push([s, end - s, r.res]);
        return;
      }
      const mid = s + Math.max(1, Math.floor((end - s) / lbs / 2)) * lbs;
      await scan(s, mid);
      await scan(mid, end);
    };
    await scan(Math.floor(done / lbs) * lbs, len);
    bad.sort((a, b) => a[0] - b[0]);
    let cur: [number, number, number] | undefined;
    const flush = () => {
      if (!cur) return;
      this.#engine.pool.view(run, cur[0], cur[1]).fill(0);
      this.#errors.push({
        sector: source.sector + BigInt((off + cur[0]) / 512),
        count: BigInt(cur[1] / 512),
        code: errnoName(-cur[2]),
      });
    };
    let total = 0;
    for (const b of bad) {
      total += b[1];
      if (cur && cur[0] + cur[1] === b[0] && cur[2] === b[2]) cur[1] += b[1];
      else {
        flush();
        cur = [...b];
      }
    }
    flush();
    return total;
  }

  async #readFull(ep: Endpoint, addr: number, len: number, offset: number): Promise<Outcome> {
    const t = this.#engine.throttle;
    let done = 0;
    if (!t.unlimited) await t.admit(len);
    while (done < len) {
      if (!t.unlimited) t.begin();
      const res = await ep.read(addr + done, len - done, offset + done);
      if (!t.unlimited) t.end();
      if (res < 0) return { done, res };
      if (res === 0) return { done, res: -Errno.EIO }; // unexpected end of device
      done += res;
    }
    return { done, res: 0 };
  }

  async #writeFull(ep: Endpoint, addr: number, len: number, offset: number): Promise<Outcome> {
    const t = this.#engine.throttle;
    let done = 0;
    while (done < len) {
      if (!t.unlimited) t.begin();
      const res = await ep.write(addr + done, len - done, offset + done);
      if (!t.unlimited) t.end();
      if (res < 0) return { done, res };
      if (res === 0) return { done, res: -28 /* ENOSPC */ };
      done += res;
    }
    return { done, res: 0 };
  }

  // ---- zero ----

  async #zero(): Promise<void> {
    await Promise.all(this.#dests.map((d, i) => this.#zeroDest(d, i)));
  }

  async #zeroDest(dest: Range, i: number): Promise<void> {
    const ep = this.#engine.endpoint(dest);
    let off = 0;
    // Try fallocate(ZERO_RANGE) piece by piece; fall back to writes when unsupported.
    while (off < dest.length && !this.#stopped) {
      const len = Math.min(ZERO_PIECE, dest.length - off);
      const res = await ep.zero(dest.offset + off, len);
      if (res === -Errno.EOPNOTSUPP) break;
      if (res < 0) {
        this.#writeFailed(i, dest, off, len, res, 0);
        if (!this.#ignore) return;
      }
      off += len;
      this.bytesDone += len;
    }
    if (off >= dest.length || this.#stopped) return;
    const zb = this.#engine.zeroBuffer;
    const parallel = this.#seq ? 1 : this.#engine.splitCount;
    let cursor = off;
    const worker = async () => {
      while (cursor < dest.length && !this.#stopped) {
        const at = cursor;
        const len = Math.min(zb.byteLength, dest.length - at);
        cursor += len;
        const w = await this.#writeFull(ep, zb.address, len, dest.offset + at);
        if (w.res < 0) this.#writeFailed(i, dest, at + w.done, len - w.done, w.res, 0);
        else this.bytesDone += len;
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  }

  async #flushAll(): Promise<void> {
    await Promise.all(this.#dests.map(async (d, i) => {
      const res = await this.#engine.endpoint(d).flush();
      if (res < 0) {
        this.#writeErr |= 1 << i;
        this.#errors.push({ dest: i, sector: d.sector, count: d.count, code: errnoName(-res) });
      }
    }));
  }
}
