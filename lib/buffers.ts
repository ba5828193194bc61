/**
 * A pool of aligned native buffers: one `posix_memalign` block split into equal buffers,
 * each with a view created once. Registrable with a ring as fixed buffers.
 *
 * @module
 */
import { IOVEC_SIZE } from "../ffi/abi.ts";
import { allocNative, freeNative, type NativeBlock } from "./native.ts";

/** One buffer of a {@linkcode BufferPool}. */
export interface NativeBuffer {
  /** Index in the pool; also its registered-buffer index once the pool is registered. */
  readonly index: number;
  /** Native address of the first byte. */
  readonly address: number;
  /** Size in bytes. */
  readonly byteLength: number;
  /** A view over the buffer's bytes (created once). */
  readonly bytes: Uint8Array;
}

/** Options for {@linkcode BufferPool}. */
export interface BufferPoolOptions {
  /** Alignment of every buffer in bytes (power of two, default 4096). */
  align?: number;
}

/**
 * Equal-sized native buffers aligned for O_DIRECT, freed on `close()`.
 *
 * @example
 * ```ts
 * import { BufferPool } from "./buffers.ts";
 * using pool = new BufferPool(4, 4096);
 * pool.get(0).bytes.fill(7);
 * console.log(pool.count, pool.get(3).address % 4096); // 4 0
 * ```
 */
export class BufferPool implements Disposable {
  /** Number of buffers. */
  readonly count: number;
  /** Size of each buffer in bytes. */
  readonly bufferSize: number;
  readonly #block: NativeBlock;
  readonly #buffers: NativeBuffer[];
  #iovecs: NativeBlock | undefined;
  #closed = false;

  /**
   * Allocates the pool.
   *
   * @param count Number of buffers (> 0).
   * @param bufferSize Size of each buffer in bytes, a multiple of the alignment.
   * @param options Alignment.
   */
  constructor(count: number, bufferSize: number, options: BufferPoolOptions = {}) {
    const align = options.align ?? 4096;
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(`Buffer count must be a positive integer: got ${count}`);
    }
    if (!Number.isSafeInteger(bufferSize) || bufferSize < 1 || bufferSize % align !== 0) {
      throw new RangeError(
        `Buffer size must be a positive multiple of ${align}: got ${bufferSize}`,
      );
    }
    this.count = count;
    this.bufferSize = bufferSize;
    this.#block = allocNative(count * bufferSize, align);
    this.#buffers = [];
    for (let i = 0; i < count; i++) {
      this.#buffers.push({
        index: i,
        address: this.#block.address + i * bufferSize,
        byteLength: bufferSize,
        bytes: new Uint8Array(this.#block.buffer, i * bufferSize, bufferSize),
      });
    }
  }

  /** Native address of the first buffer (the pool is contiguous). */
  get address(): number {
    return this.#block.address;
  }

  /** A view over the whole pool. */
  get bytes(): Uint8Array {
    return new Uint8Array(this.#block.buffer);
  }

  /**
   * Buffer `i`.
   *
   * @param i Index, 0 ≤ i < count.
   * @returns The buffer.
   */
  get(i: number): NativeBuffer {
    const b = this.#buffers[i];
    if (!b) throw new RangeError(`Buffer index out of range: ${i} (pool has ${this.count})`);
    return b;
  }

  /**
   * A native `struct iovec[count]` describing every buffer, for `io_uring_register_buffers`.
   * Built once and owned by the pool.
   *
   * @returns The iovec block's pointer and the number of entries.
   */
  iovecs(): { pointer: Deno.PointerObject; count: number } {
    if (!this.#iovecs) {
      this.#iovecs = allocNative(this.count * IOVEC_SIZE, 8);
      const v = new DataView(this.#iovecs.buffer);
      for (const b of this.#buffers) {
        v.setBigUint64(b.index * IOVEC_SIZE, BigInt(b.address), true);
        v.setBigUint64(b.index * IOVEC_SIZE + 8, BigInt(b.byteLength), true);
      }
    }
    return { pointer: this.#iovecs.pointer, count: this.count };
  }

  /** Frees the native memory. Safe to call twice. Unregister from rings first. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#iovecs) freeNative(this.#iovecs);
    freeNative(this.#block);
  }

  /** Same as {@linkcode BufferPool.close}. */
  [Symbol.dispose](): void {
    this.close();
  }
}
