/**
 * Native (C heap) memory: aligned allocation and views created once over it.
 *
 * @module
 */
import { errno, libc, MADV, MAP, PROT } from "../ffi/libc.ts";
import { UringError } from "./uring_error.ts";

/** A block of native memory (`posix_memalign` or `mmap`), with one ArrayBuffer over it. */
export interface NativeBlock {
  /** The pointer as Deno sees it. */
  readonly pointer: Deno.PointerObject;
  /** The numeric address, for writing into SQEs and iovecs. */
  readonly address: number;
  /** Length in bytes. */
  readonly byteLength: number;
  /** A (non-copying) ArrayBuffer over the whole block. */
  readonly buffer: ArrayBuffer;
}

/**
 * Allocates `size` bytes aligned to `align` with `posix_memalign`, zero-filled.
 *
 * @param size Bytes to allocate (> 0).
 * @param align Alignment, a power of two (default 4096).
 * @returns The block; release it with {@linkcode freeNative}.
 * @throws {UringError} ENOMEM when the allocation fails.
 * @example
 * ```ts ignore
 * const block = allocNative(1 << 20);
 * freeNative(block);
 * ```
 */
export function allocNative(size: number, align = 4096): NativeBlock {
  const block = allocRaw(size, align);
  libc().memset(block.pointer, 0, BigInt(size));
  return block;
}

const HUGE_PAGE = 2 << 20;

/**
 * Allocates data memory (a page pool): not zero-filled, since every byte is read into before it
 * is written out, and in transparent huge pages where the kernel allows them (2 MiB-aligned,
 * `MADV_HUGEPAGE`), so that faulting it in and registering it with a ring touch 512 times fewer
 * pages.
 *
 * @param size Bytes to allocate (> 0).
 * @returns The block; release it with {@linkcode freeNative}.
 * @throws {UringError} ENOMEM when the allocation fails.
 * @example
 * ```ts ignore
 * const pool = allocData(16 << 20);
 * freeNative(pool);
 * ```
 */
export function allocData(size: number): NativeBlock {
  if (size < HUGE_PAGE) return allocRaw(size, 4096);
  const block = allocRaw(size, HUGE_PAGE);
  libc().madvise(block.pointer, BigInt(size), MADV.HUGEPAGE); // advice only: may be refused
  return block;
}

/**
 * Maps `size` bytes of read-only zeros (anonymous memory): every page is the kernel's shared zero
 * page, so the block costs no RSS however large, and can only be written from (e.g. by writes
 * that zero a device): storing into its `buffer` would fault. Release it with
 * {@linkcode unmapZeros}.
 *
 * @param size Bytes (> 0).
 * @returns The block.
 * @throws {UringError} When the mapping fails.
 * @example
 * ```ts ignore
 * const zeros = mapZeros(1 << 20);
 * unmapZeros(zeros);
 * ```
 */
export function mapZeros(size: number): NativeBlock {
  const p = libc().mmap(null, BigInt(size), PROT.READ, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0n);
  if (p === null || BigInt(Deno.UnsafePointer.value(p)) === 2n ** 64n - 1n) { // MAP_FAILED
    throw new UringError("mmap", errno(), `Cannot map ${size} bytes of zeros`);
  }
  return {
    pointer: p,
    address: Number(Deno.UnsafePointer.value(p)),
    byteLength: size,
    buffer: Deno.UnsafePointerView.getArrayBuffer(p, size),
  };
}

/**
 * Unmaps a block from {@linkcode mapZeros}.
 *
 * @param block The block.
 * @example
 * ```ts ignore
 * unmapZeros(mapZeros(4096));
 * ```
 */
export function unmapZeros(block: NativeBlock): void {
  libc().munmap(block.pointer, BigInt(block.byteLength));
}

function allocRaw(size: number, align: number): NativeBlock {
  const out = new BigUint64Array(1);
  const rc = libc().posix_memalign(new Uint8Array(out.buffer), BigInt(align), BigInt(size));
  if (rc !== 0) throw new UringError("posix_memalign", rc, `Cannot allocate ${size} bytes`);
  const pointer = Deno.UnsafePointer.create(out[0])!;
  return {
    pointer,
    address: Number(out[0]),
    byteLength: size,
    buffer: Deno.UnsafePointerView.getArrayBuffer(pointer, size),
  };
}

/**
 * Frees a block from {@linkcode allocNative}.
 *
 * @param block The block.
 * @example
 * ```ts ignore
 * freeNative(allocNative(4096));
 * ```
 */
export function freeNative(block: NativeBlock): void {
  libc().free(block.pointer);
}

/**
 * A view over `length` bytes of native memory at `address` (e.g. kernel ring memory).
 *
 * @param address Numeric address.
 * @param length Bytes.
 * @returns An ArrayBuffer that does not copy.
 * @example
 * ```ts ignore
 * const head = new Uint32Array(nativeView(addr, 4));
 * ```
 */
export function nativeView(address: number | bigint, length: number): ArrayBuffer {
  const p = Deno.UnsafePointer.create(BigInt(address));
  if (!p) throw new RangeError(`Null native address for a ${length}-byte view`);
  return Deno.UnsafePointerView.getArrayBuffer(p, length);
}
