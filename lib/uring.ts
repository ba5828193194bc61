/**
 * A typed io_uring ring over liburing for Deno: the ring, prep helpers named after
 * liburing's, aligned native buffers and the error type.
 *
 * @example
 * ```ts
 * import { BufferPool, prepNop, Ring } from "@kcopyd/kcopyd/uring";
 * await using ring = Ring.create({ entries: 64 });
 * using pool = new BufferPool(4, 4096);
 * ring.registerBuffers(pool.iovecs());
 * console.log(await ring.run((sqe) => prepNop(sqe))); // 0
 * ```
 *
 * @module
 */
export { Ring } from "./ring.ts";
export type { Done, PairDone, Prep, RingOptions, RingStats, RwOp } from "./ring.ts";
export {
  opName,
  prepCancelAny,
  prepFallocate,
  prepFsync,
  prepNop,
  prepRead,
  prepReadFixed,
  prepReadv,
  prepRw,
  prepWrite,
  prepWriteFixed,
  prepWritev,
  sqeOpcode,
  sqeSetFlags,
} from "./sqe.ts";
export type { Sqe } from "./sqe.ts";
export { BufferPool } from "./buffers.ts";
export type { BufferPoolOptions, NativeBuffer } from "./buffers.ts";
export { UringError } from "./uring_error.ts";
export { errnoName } from "./errno.ts";
export { Falloc, Op, SetupFlag, SqeFlag } from "../ffi/abi.ts";
