/**
 * The client's fixed memory: `pages` × 4 KiB of aligned native memory set aside at creation.
 * Jobs take contiguous runs of pages; a request that does not fit waits in FIFO order, and
 * freed pages go to the oldest waiter first. Nothing is allocated after creation.
 *
 * @module
 */
import { allocData, freeNative, type NativeBlock } from "./native.ts";

/** Size of one page. */
export const PAGE_SIZE = 4096;

/** A contiguous run of pages lent to a job. */
export interface PageRun {
  /** First page index. */
  readonly first: number;
  /** Number of pages. */
  readonly count: number;
  /** Native address of the first byte. */
  readonly address: number;
}

interface Waiter {
  count: number;
  grant: (run: PageRun) => void;
}

/**
 * A fixed pool of pages with FIFO waiting.
 *
 * @example
 * ```ts
 * import { PagePool } from "./page_pool.ts";
 * using pool = new PagePool(16);
 * const run = await pool.acquire(4);
 * pool.release(run);
 * console.log(pool.freePages); // 16
 * ```
 */
export class PagePool implements Disposable {
  /** Total pages. */
  readonly pages: number;
  readonly #block: NativeBlock;
  readonly #bytes: Uint8Array;
  // Free extents as [first, count], sorted by first, never adjacent.
  readonly #free: [number, number][];
  readonly #waiters: Waiter[] = [];
  #freePages: number;
  #iov: BigUint64Array | undefined;
  #closed = false;

  /**
   * Allocates the pool.
   *
   * @param pages Number of 4 KiB pages (> 0).
   */
  constructor(pages: number) {
    if (!Number.isSafeInteger(pages) || pages < 1) {
      throw new RangeError(`Pool pages must be a positive integer: got ${pages}`);
    }
    this.pages = pages;
    this.#block = allocData(pages * PAGE_SIZE);
    this.#bytes = new Uint8Array(this.#block.buffer);
    this.#free = [[0, pages]];
    this.#freePages = pages;
  }

  /** Native address of page 0. */
  get address(): number {
    return this.#block.address;
  }

  /** Pages not lent out. */
  get freePages(): number {
    return this.#freePages;
  }

  /** Requests waiting for pages. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * A view of a run's bytes (for filling zeros into unreadable sectors).
   *
   * @param run The run.
   * @param offset Byte offset in the run.
   * @param length Bytes.
   * @returns A view over pool memory.
   */
  view(run: PageRun, offset: number, length: number): Uint8Array {
    return this.#bytes.subarray(
      run.first * PAGE_SIZE + offset,
      run.first * PAGE_SIZE + offset + length,
    );
  }

  /** The pool as one `struct iovec` for `io_uring_register_buffers` (index 0). */
  iovec(): { pointer: Deno.PointerObject; count: number } {
    this.#iov ??= new BigUint64Array([
      BigInt(this.#block.address),
      BigInt(this.pages * PAGE_SIZE),
    ]);
    return { pointer: Deno.UnsafePointer.of(this.#iov)!, count: 1 };
  }

  /**
   * Takes `count` contiguous pages, waiting (FIFO) until they are free.
   *
   * @param count Pages, 1 ≤ count ≤ pages.
   * @returns The run; give it back with {@linkcode PagePool.release}.
   */
  acquire(count: number): Promise<PageRun> {
    if (count < 1 || count > this.pages) {
      return Promise.reject(
        new RangeError(`Cannot take ${count} pages from a pool of ${this.pages}`),
      );
    }
    if (this.#waiters.length === 0) {
      const run = this.#take(count);
      if (run) return Promise.resolve(run);
    }
    return new Promise((grant) => this.#waiters.push({ count, grant }));
  }

  /**
   * Callback form of {@linkcode PagePool.acquire} for hot paths: `grant` runs with the run at
   * once when pages are free and nobody waits, otherwise later, in FIFO order.
   *
   * @param count Pages, 1 ≤ count ≤ pages.
   * @param grant Receives the run; give it back with {@linkcode PagePool.release}.
   * @throws {RangeError} When `count` does not fit the pool at all.
   */
  acquireCb(count: number, grant: (run: PageRun) => void): void {
    if (count < 1 || count > this.pages) {
      throw new RangeError(`Cannot take ${count} pages from a pool of ${this.pages}`);
    }
    const run = this.#waiters.length === 0 ? this.#take(count) : undefined;
    if (run) grant(run);
    else this.#waiters.push({ count, grant });
  }

  /**
   * Takes `count` contiguous pages if they are free now and nobody is waiting.
   *
   * @param count Pages.
   * @returns The run, or undefined (then use {@linkcode PagePool.acquire}).
   */
  tryAcquire(count: number): PageRun | undefined {
    return this.#waiters.length === 0 && count <= this.pages ? this.#take(count) : undefined;
  }

  /**
   * Returns a run to the pool and serves waiters in order.
   *
   * @param run A run from {@linkcode PagePool.acquire}.
   */
  release(run: PageRun): void {
    this.#give(run.first, run.count);
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0];
      const got = this.#take(w.count);
      if (!got) break;
      this.#waiters.shift();
      w.grant(got);
    }
  }

  #take(count: number): PageRun | undefined {
    const free = this.#free;
    for (let i = 0; i < free.length; i++) {
      const ext = free[i];
      if (ext[1] < count) continue;
      const first = ext[0];
      if (ext[1] === count) free.splice(i, 1);
      else {
        ext[0] += count;
        ext[1] -= count;
      }
      this.#freePages -= count;
      return { first, count, address: this.#block.address + first * PAGE_SIZE };
    }
    return undefined;
  }

  #give(first: number, count: number): void {
    const free = this.#free;
    let i = 0;
    while (i < free.length && free[i][0] < first) i++;
    const prev = i > 0 ? free[i - 1] : undefined;
    const next = i < free.length ? free[i] : undefined;
    if (prev && prev[0] + prev[1] === first) {
      prev[1] += count;
      if (next && prev[0] + prev[1] === next[0]) {
        prev[1] += next[1];
        free.splice(i, 1);
      }
    } else if (next && first + count === next[0]) {
      next[0] = first;
      next[1] += count;
    } else {
      free.splice(i, 0, [first, count]);
    }
    this.#freePages += count;
  }

  /** Frees the memory. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    freeNative(this.#block);
  }

  /** Same as {@linkcode PagePool.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
