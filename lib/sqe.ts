/**
 * Prep helpers named after liburing's `io_uring_prep_*`: each fills one submission queue
 * entry in ring memory and does nothing else. An {@linkcode Sqe} is a cursor (a view and
 * a byte offset) that the ring points at the entry to fill; views are never created per I/O.
 *
 * @module
 */
import { FSYNC_DATASYNC, Op, SQE, SQE_SIZE } from "../ffi/abi.ts";

/** A position in the submission queue: the ring's one cached view and an entry's offset. */
export interface Sqe {
  /** The view over the whole SQE array (created once per ring). */
  readonly view: DataView;
  /** Byte offset of this entry in `view`. */
  offset: number;
}

const TWO32 = 4294967296;

/** Writes a 64-bit little-endian value given as a safe integer or a bigint. */
function setU64(view: DataView, at: number, value: number | bigint): void {
  if (typeof value === "bigint") {
    view.setBigUint64(at, value, true);
  } else {
    view.setUint32(at, value >>> 0, true);
    view.setUint32(at + 4, Math.floor(value / TWO32), true);
  }
}

/**
 * The common filler behind every prep helper (liburing's `io_uring_prep_rw`): sets the
 * opcode, fd, address, length and offset and clears every other field.
 *
 * @param sqe The entry to fill.
 * @param op An `IORING_OP_*` opcode.
 * @param fd File descriptor (or registered file index with `IOSQE_FIXED_FILE`).
 * @param addr Native address (pointer value) of the buffer or iovec array, or a plain value.
 * @param len Length in bytes (or count of iovecs).
 * @param offset File offset in bytes.
 * @example
 * ```ts ignore
 * prepRw(sqe, 22, fd, buf.address, 4096, 0); // IORING_OP_READ
 * ```
 */
export function prepRw(
  sqe: Sqe,
  op: number,
  fd: number,
  addr: number | bigint,
  len: number,
  offset: number | bigint,
): void {
  const v = sqe.view;
  const o = sqe.offset;
  v.setUint32(o, op & 0xff, true); // opcode, flags = 0, ioprio = 0
  v.setInt32(o + SQE.fd, fd, true);
  setU64(v, o + SQE.off, offset);
  setU64(v, o + SQE.addr, addr);
  v.setUint32(o + SQE.len, len >>> 0, true);
  v.setUint32(o + SQE.opFlags, 0, true);
  // user_data is written by the ring; clear buf_index .. end.
  for (let i = SQE.bufIndex; i < SQE_SIZE; i += 8) v.setBigUint64(o + i, 0n, true);
}

/**
 * `io_uring_prep_nop`: an operation that does nothing and completes with 0.
 *
 * @param sqe The entry to fill.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepNop(sqe));
 * ```
 */
export function prepNop(sqe: Sqe): void {
  prepRw(sqe, Op.NOP, -1, 0, 0, 0);
}

/**
 * `io_uring_prep_read`: read `nbytes` at `offset` into the native buffer at `addr`.
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param addr Native address of the destination buffer.
 * @param nbytes Bytes to read.
 * @param offset File offset in bytes.
 * @example
 * ```ts ignore
 * const n = await ring.run((sqe) => prepRead(sqe, fd, buf.address, 4096, 0));
 * ```
 */
export function prepRead(
  sqe: Sqe,
  fd: number,
  addr: number | bigint,
  nbytes: number,
  offset: number | bigint,
): void {
  prepRw(sqe, Op.READ, fd, addr, nbytes, offset);
}

/**
 * `io_uring_prep_write`: write `nbytes` from the native buffer at `addr` to `offset`.
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param addr Native address of the source buffer.
 * @param nbytes Bytes to write.
 * @param offset File offset in bytes.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepWrite(sqe, fd, buf.address, 4096, 0));
 * ```
 */
export function prepWrite(
  sqe: Sqe,
  fd: number,
  addr: number | bigint,
  nbytes: number,
  offset: number | bigint,
): void {
  prepRw(sqe, Op.WRITE, fd, addr, nbytes, offset);
}

/**
 * `io_uring_prep_read_fixed`: a read into registered buffer `bufIndex` (address inside it).
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param addr Native address inside the registered buffer.
 * @param nbytes Bytes to read.
 * @param offset File offset in bytes.
 * @param bufIndex Index of the registered buffer.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepReadFixed(sqe, fd, buf.address, 4096, 0, buf.index));
 * ```
 */
export function prepReadFixed(
  sqe: Sqe,
  fd: number,
  addr: number | bigint,
  nbytes: number,
  offset: number | bigint,
  bufIndex: number,
): void {
  prepRw(sqe, Op.READ_FIXED, fd, addr, nbytes, offset);
  sqe.view.setUint16(sqe.offset + SQE.bufIndex, bufIndex, true);
}

/**
 * `io_uring_prep_write_fixed`: a write from registered buffer `bufIndex`.
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param addr Native address inside the registered buffer.
 * @param nbytes Bytes to write.
 * @param offset File offset in bytes.
 * @param bufIndex Index of the registered buffer.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepWriteFixed(sqe, fd, buf.address, 4096, 0, buf.index));
 * ```
 */
export function prepWriteFixed(
  sqe: Sqe,
  fd: number,
  addr: number | bigint,
  nbytes: number,
  offset: number | bigint,
  bufIndex: number,
): void {
  prepRw(sqe, Op.WRITE_FIXED, fd, addr, nbytes, offset);
  sqe.view.setUint16(sqe.offset + SQE.bufIndex, bufIndex, true);
}

/**
 * `io_uring_prep_readv`: a vectored read; `iovecs` is the native address of `struct iovec[]`.
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param iovecs Native address of the iovec array.
 * @param nrVecs Number of iovecs.
 * @param offset File offset in bytes.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepReadv(sqe, fd, iov.address, 2, 0));
 * ```
 */
export function prepReadv(
  sqe: Sqe,
  fd: number,
  iovecs: number | bigint,
  nrVecs: number,
  offset: number | bigint,
): void {
  prepRw(sqe, Op.READV, fd, iovecs, nrVecs, offset);
}

/**
 * `io_uring_prep_writev`: a vectored write; `iovecs` is the native address of `struct iovec[]`.
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param iovecs Native address of the iovec array.
 * @param nrVecs Number of iovecs.
 * @param offset File offset in bytes.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepWritev(sqe, fd, iov.address, 2, 0));
 * ```
 */
export function prepWritev(
  sqe: Sqe,
  fd: number,
  iovecs: number | bigint,
  nrVecs: number,
  offset: number | bigint,
): void {
  prepRw(sqe, Op.WRITEV, fd, iovecs, nrVecs, offset);
}

/**
 * `io_uring_prep_fsync`: make the file durable; `datasync` sets `IORING_FSYNC_DATASYNC`.
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param datasync Only data and the metadata needed to read it (fdatasync).
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepFsync(sqe, fd));
 * ```
 */
export function prepFsync(sqe: Sqe, fd: number, datasync = false): void {
  prepRw(sqe, Op.FSYNC, fd, 0, 0, 0);
  if (datasync) sqe.view.setUint32(sqe.offset + SQE.opFlags, FSYNC_DATASYNC, true);
}

/**
 * `io_uring_prep_fallocate`: `fallocate(fd, mode, offset, len)` through the ring.
 *
 * @param sqe The entry to fill.
 * @param fd File descriptor.
 * @param mode `FALLOC_FL_*` bits, e.g. `Falloc.ZERO_RANGE`.
 * @param offset Start in bytes.
 * @param len Length in bytes.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepFallocate(sqe, fd, Falloc.ZERO_RANGE, 0, 1 << 20));
 * ```
 */
export function prepFallocate(
  sqe: Sqe,
  fd: number,
  mode: number,
  offset: number | bigint,
  len: number | bigint,
): void {
  prepRw(sqe, Op.FALLOCATE, fd, len, mode, offset);
}

/**
 * `io_uring_prep_cancel` with flags only (e.g. `IORING_ASYNC_CANCEL_ANY`).
 *
 * @param sqe The entry to fill.
 * @param flags `IORING_ASYNC_CANCEL_*` bits.
 * @example
 * ```ts ignore
 * await ring.run((sqe) => prepCancelAny(sqe, ASYNC_CANCEL_ANY));
 * ```
 */
export function prepCancelAny(sqe: Sqe, flags: number): void {
  prepRw(sqe, Op.ASYNC_CANCEL, -1, 0, 0, 0);
  sqe.view.setUint32(sqe.offset + SQE.opFlags, flags, true);
}

/**
 * `io_uring_sqe_set_flags`: sets `IOSQE_*` flags (e.g. `SqeFlag.IO_LINK`) on a filled entry.
 *
 * @param sqe The entry.
 * @param flags `IOSQE_*` bits.
 * @example
 * ```ts ignore
 * prepWrite(sqe, fd, addr, 4096, 0);
 * sqeSetFlags(sqe, SqeFlag.IO_LINK);
 * ```
 */
export function sqeSetFlags(sqe: Sqe, flags: number): void {
  sqe.view.setUint8(sqe.offset + SQE.flags, flags);
}

/**
 * Reads the opcode of a filled entry.
 *
 * @param sqe The entry.
 * @returns The `IORING_OP_*` value.
 * @example
 * ```ts ignore
 * sqeOpcode(sqe); // 22 for a read
 * ```
 */
export function sqeOpcode(sqe: Sqe): number {
  return sqe.view.getUint8(sqe.offset + SQE.opcode);
}

const OP_NAMES: Record<number, string> = {
  [Op.NOP]: "nop",
  [Op.READV]: "readv",
  [Op.WRITEV]: "writev",
  [Op.FSYNC]: "fsync",
  [Op.READ_FIXED]: "read_fixed",
  [Op.WRITE_FIXED]: "write_fixed",
  [Op.ASYNC_CANCEL]: "async_cancel",
  [Op.FALLOCATE]: "fallocate",
  [Op.READ]: "read",
  [Op.WRITE]: "write",
};

/**
 * The liburing-style name of an opcode, e.g. `opName(22) === "read"`.
 *
 * @param op An `IORING_OP_*` value.
 * @returns Its short name.
 * @example
 * ```ts
 * import { opName } from "./sqe.ts";
 * console.log(opName(23)); // "write"
 * ```
 */
export function opName(op: number): string {
  return OP_NAMES[op] ?? `op${op}`;
}
