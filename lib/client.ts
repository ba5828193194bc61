/**
 * The kcopyd client: copy a range of sectors to up to 8 (or 32) destinations, or zero ranges,
 * asynchronously, with the kernel's `dm-kcopyd` semantics on an io_uring.
 *
 * @module
 */
import type { BlockDevice } from "./block_device.ts";
import type { Endpoint } from "./endpoint.ts";
import { Job, type JobEngine } from "./job.ts";
import { mapZeros, type NativeBlock, unmapZeros } from "./native.ts";
import { PAGE_SIZE, PagePool } from "./page_pool.ts";
import { checkDests, checkFlags, checkRegion, overlaps, type Range } from "./region.ts";
import { Ring } from "./ring.ts";
import { startSmallCopy } from "./small_copy.ts";
import { Throttle } from "./throttle.ts";
import {
  type ClientOptions,
  type CopyResult,
  type IoRegion,
  type JobOptions,
  KcopydFlags,
} from "./types.ts";

/** The options of a job given none (shared: a job never writes to its options). */
const NO_OPTIONS: JobOptions<any> = Object.freeze({});

function positiveInt(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}: got ${value}`);
  }
  return value;
}

/**
 * A kcopyd client: a fixed page pool, a ring, and the jobs running on them.
 *
 * @example
 * ```ts ignore
 * import { KcopydClient, openDevice } from "@kcopyd/kcopyd";
 * const src = await openDevice("/dev/loop0");
 * const dst = await openDevice("/dev/loop1", { write: true });
 * await using kc = await KcopydClient.create({ pages: 256 });
 * const r = await kc.copy(
 *   { device: src, sector: 0n, count: 2048n },
 *   [{ device: dst, sector: 4096n }],
 * );
 * console.log(r.readErr, r.writeErr); // false 0
 * ```
 */
export class KcopydClient implements AsyncDisposable {
  /** Pages in the pool. */
  readonly pages: number;
  /** Bytes per sub-job. */
  readonly subJobSize: number;
  /** Sub-jobs per job running in parallel. */
  readonly splitCount: number;
  /** Most destinations per job. */
  readonly maxDestinations: number;
  readonly #ring: Ring;
  readonly #pool: PagePool;
  readonly #zero: NativeBlock;
  readonly #engine: JobEngine;
  readonly #endpoints = new WeakMap<BlockDevice, Endpoint>();
  /** Jobs running (for progress). */
  readonly #active = new Set<Job>();
  /** Jobs whose notify has not run yet, and who waits for them all. */
  #pending = 0;
  readonly #flushes: (() => void)[] = [];
  #destroying: Promise<void> | undefined;

  private constructor(options: Required<Omit<ClientOptions, "throttle">>, throttle: Throttle) {
    this.pages = options.pages;
    this.subJobSize = options.subJobSize;
    this.splitCount = options.splitCount;
    this.maxDestinations = options.maxDestinations;
    this.#ring = Ring.create({
      entries: options.ringEntries,
      cqEntries: Math.max(options.queueDepth, options.ringEntries),
      waitBatch: options.waitBatch,
      waitMode: options.waitMode,
    });
    try {
      this.#pool = new PagePool(options.pages);
      this.#zero = mapZeros(Math.min(options.subJobSize, 1 << 20));
    } catch (err) {
      this.#ring.close();
      throw err;
    }
    let fixed: { start: number; end: number } | undefined;
    if (options.fixedBuffers && options.pages * PAGE_SIZE <= 1 << 30) {
      try {
        this.#ring.registerBuffers(this.#pool.iovec());
        fixed = { start: this.#pool.address, end: this.#pool.address + options.pages * PAGE_SIZE };
      } catch {
        fixed = undefined; // e.g. over the memlock limit: plain reads and writes still work
      }
    }
    const ring = this.#ring;
    const endpoints = this.#endpoints;
    this.#engine = {
      pool: this.#pool,
      throttle,
      chunkBytes: Math.min(options.subJobSize, options.pages * PAGE_SIZE),
      splitCount: options.splitCount,
      zeroBuffer: this.#zero,
      endpoint(range: Range): Endpoint {
        let ep = endpoints.get(range.device);
        if (!ep) {
          ep = range.device.endpoint(ring, fixed);
          endpoints.set(range.device, ep);
        }
        return ep;
      },
    };
  }

  /**
   * Creates a client: sets aside `pages` × 4 KiB and sets up its ring.
   *
   * @param options Pool size, sub-job size and count, destinations, throttle, ring sizes.
   * @returns The client; release it with `await kc.destroy()` or `await using`.
   * @throws {RangeError} For an option out of range (the message names it).
   * @throws {UringError} When io_uring is unavailable.
   * @throws {LiburingLoadError} When liburing is missing.
   */
  static create(options: ClientOptions = {}): Promise<KcopydClient> {
    try {
      const o = {
        pages: positiveInt(options.pages ?? 4096, "pages", 1, 1 << 22),
        subJobSize: positiveInt(options.subJobSize ?? 1 << 20, "subJobSize", 4096, 1 << 30),
        splitCount: positiveInt(options.splitCount ?? 8, "splitCount", 1, 256),
        maxDestinations: positiveInt(options.maxDestinations ?? 8, "maxDestinations", 1, 32),
        ringEntries: positiveInt(options.ringEntries ?? 256, "ringEntries", 1, 32768),
        queueDepth: positiveInt(options.queueDepth ?? 4096, "queueDepth", 1, 65536),
        fixedBuffers: options.fixedBuffers ?? true,
        waitBatch: positiveInt(options.waitBatch ?? 1, "waitBatch", 1, 4096),
        waitMode: options.waitMode ?? "worker",
      };
      if (o.subJobSize % PAGE_SIZE !== 0) {
        throw new RangeError(`subJobSize must be a multiple of 4096 bytes: got ${o.subJobSize}`);
      }
      const t = options.throttle;
      let throttle: Throttle;
      if (t instanceof Throttle) throttle = t;
      else if (t === undefined || typeof t === "number") throttle = new Throttle({ percent: t });
      else throw new TypeError(`throttle must be a percentage or a Throttle: got ${t}`);
      return Promise.resolve(new KcopydClient(o, throttle));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** True once {@linkcode KcopydClient.destroy} was called. */
  get destroyed(): boolean {
    return this.#destroying !== undefined;
  }

  /** Source bytes finished by jobs still running (for progress reports). */
  get activeBytesDone(): number {
    let n = 0;
    for (const j of this.#active) n += j.bytesDone;
    return n;
  }

  /**
   * Copies `source` to every destination: each chunk is read once into pool memory and
   * written to all destinations in parallel.
   *
   * @param source The region to read.
   * @param dests Up to `maxDestinations` regions; a missing `count` takes the source's.
   * @param options Flags, notify callback and context, flush.
   * @returns The result; I/O errors are reported in it, never by rejecting.
   * @throws {RangeError} (as a rejection, before any I/O) for sizes, positions, overlap,
   *   too many destinations and misalignment.
   * @throws {TypeError} (as a rejection) for wrong kinds: not a region, a read-only destination.
   * @example
   * ```ts ignore
   * const r = await kc.copy({ device: src, sector: 0n, count: 64n }, [{ device: dst, sector: 0n }]);
   * ```
   */
  copy<C = unknown>(
    source: IoRegion,
    dests: IoRegion[],
    options: JobOptions<C> = NO_OPTIONS,
  ): Promise<CopyResult> {
    let flags: number;
    let src: Range;
    let ranges: Range[];
    try {
      flags = this.#checkOptions(options);
      src = checkRegion(source, "source");
      ranges = checkDests(dests, this.maxDestinations, src.count);
      for (let i = 0; i < ranges.length; i++) {
        const r = ranges[i];
        if (overlaps(src, r)) {
          throw new RangeError(
            `Source and dests[${i}] overlap on the same storage: "${src.device.path}" sectors ` +
              `${src.sector}+${src.count} and "${r.device.path}" sectors ${r.sector}+${r.count}`,
          );
        }
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#start(options, flags, src, ranges);
  }

  /**
   * Zeroes every destination range (`fallocate(ZERO_RANGE)` where supported, otherwise writes
   * from one shared zero buffer).
   *
   * @param dests Regions, each with its own count.
   * @param options Flags, notify callback and context, flush.
   * @returns The result, in the same shape as {@linkcode KcopydClient.copy}'s.
   * @throws {RangeError} / {TypeError} As rejections, before any I/O.
   * @example
   * ```ts ignore
   * await kc.zero([{ device: dst, sector: 0n, count: 64n }]);
   * ```
   */
  zero<C = unknown>(dests: IoRegion[], options: JobOptions<C> = NO_OPTIONS): Promise<CopyResult> {
    let flags: number;
    let ranges: Range[];
    try {
      flags = this.#checkOptions(options);
      ranges = checkDests(dests, this.maxDestinations);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#start(options, flags, undefined, ranges);
  }

  /** Checks what every job takes; returns the checked flags. */
  #checkOptions<C>(options: JobOptions<C>): number {
    if (this.#destroying) {
      throw new Error("KcopydClient is destroyed: create a new client with KcopydClient.create()");
    }
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object: got ${options}`);
    }
    if (options.notify !== undefined && typeof options.notify !== "function") {
      throw new TypeError(`notify must be a function: got ${typeof options.notify}`);
    }
    return checkFlags(options.flags);
  }

  /** Runs a checked job: the one-chunk fast path when it qualifies, else a {@linkcode Job}. */
  #start<C>(
    options: JobOptions<C>,
    flags: number,
    source: Range | undefined,
    dests: Range[],
  ): Promise<CopyResult> {
    this.#pending++;
    const flush = options.flush ?? false;
    return new Promise((resolve, reject) => {
      // Results always arrive from the event loop, so notify never runs inside copy()/zero().
      const finish = (result: CopyResult) => {
        try {
          options.notify?.(result.readErr, result.writeErr, options.context as C);
          resolve(result);
        } catch (err) {
          reject(err);
        } finally {
          if (--this.#pending === 0) this.#wakeFlushes();
        }
      };
      const general = () => {
        const job = new Job(this.#engine, source, dests, flags, flush);
        this.#active.add(job);
        job.run().then((result) => {
          this.#active.delete(job);
          finish(result);
        }, (err) => {
          // Not an I/O error (those are results): a bug. Reject rather than hang.
          this.#active.delete(job);
          if (--this.#pending === 0) this.#wakeFlushes();
          reject(err);
        });
      };
      const small = source !== undefined && dests.length === 1 && !flush &&
        (flags & KcopydFlags.WRITE_SEQ) === 0 &&
        startSmallCopy(this.#engine, source, dests[0], finish, general);
      if (!small) general();
    });
  }

  #wakeFlushes(): void {
    const waiters = this.#flushes.splice(0);
    for (const w of waiters) w();
  }

  /** Resolves when every job submitted so far has completed and its notify has run. */
  flush(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushes.push(resolve));
  }

  /**
   * Waits for in-flight jobs, then releases the ring and the pages. Idempotent; new jobs are
   * refused from the first call on.
   */
  destroy(): Promise<void> {
    this.#destroying ??= (async () => {
      await this.flush();
      await this.#ring.close();
      this.#pool.close();
      unmapZeros(this.#zero);
    })();
    return this.#destroying;
  }

  /** Same as {@linkcode KcopydClient.destroy}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.destroy();
  }
}
