/**
 * The io_uring ABI as seen from TypeScript: SQE/CQE layouts, opcodes, flags and the
 * offsets of liburing 2.3's `struct io_uring` on x86_64. `tests/abi_probe_test.ts`
 * checks every number here against the C headers when `cc` is available.
 *
 * @module
 */

/** Size of one submission queue entry (without IORING_SETUP_SQE128). */
export const SQE_SIZE = 64;
/** Size of one completion queue entry (without IORING_SETUP_CQE32). */
export const CQE_SIZE = 16;

/** Byte offsets inside `struct io_uring_sqe`. */
export const SQE = {
  opcode: 0, // u8
  flags: 1, // u8
  ioprio: 2, // u16
  fd: 4, // s32
  off: 8, // u64 (also addr2)
  addr: 16, // u64
  len: 24, // u32
  opFlags: 28, // u32: rw_flags, fsync_flags, cancel_flags, ...
  userData: 32, // u64
  bufIndex: 40, // u16
  personality: 42, // u16
  fileIndex: 44, // s32 (splice_fd_in)
  addr3: 48, // u64
  pad2: 56, // u64
} as const;

/** Byte offsets inside `struct io_uring_cqe`. */
export const CQE = {
  userData: 0, // u64
  res: 8, // s32
  flags: 12, // u32
} as const;

/** Byte offsets inside liburing 2.3's `struct io_uring` (x86_64, LP64). */
export const RING = {
  size: 216,
  sq: {
    khead: 0,
    ktail: 8,
    kringMask: 16,
    kringEntries: 24,
    kflags: 32,
    kdropped: 40,
    array: 48,
    sqes: 56,
    sqeHead: 64,
    sqeTail: 68,
    ringSz: 72,
    ringPtr: 80,
    ringMask: 88,
    ringEntries: 92,
  },
  cq: {
    khead: 104,
    ktail: 112,
    kringMask: 120,
    kringEntries: 128,
    kflags: 136,
    koverflow: 144,
    cqes: 152,
    ringSz: 160,
    ringPtr: 168,
    ringMask: 176,
    ringEntries: 180,
  },
  flags: 192,
  ringFd: 196,
  features: 200,
  enterRingFd: 204,
  intFlags: 208,
} as const;

/**
 * `IORING_OP_*` opcodes used here (values from `linux/io_uring.h`), e.g. for `Ring.queueRw`.
 *
 * @example
 * ```ts
 * import { Op } from "./abi.ts";
 * console.log(Op.READ_FIXED); // 4
 * ```
 */
export const Op = {
  NOP: 0,
  READV: 1,
  WRITEV: 2,
  FSYNC: 3,
  READ_FIXED: 4,
  WRITE_FIXED: 5,
  ASYNC_CANCEL: 14,
  FALLOCATE: 17,
  READ: 22,
  WRITE: 23,
} as const;

/** `IOSQE_*` submission flags. */
export const SqeFlag = {
  FIXED_FILE: 1 << 0,
  IO_DRAIN: 1 << 1,
  IO_LINK: 1 << 2,
  IO_HARDLINK: 1 << 3,
  ASYNC: 1 << 4,
  BUFFER_SELECT: 1 << 5,
  CQE_SKIP_SUCCESS: 1 << 6,
} as const;

/** `IORING_SETUP_*` flags accepted by `io_uring_queue_init`. */
export const SetupFlag = {
  IOPOLL: 1 << 0,
  SQPOLL: 1 << 1,
  CQSIZE: 1 << 3,
  CLAMP: 1 << 4,
  SUBMIT_ALL: 1 << 7,
  COOP_TASKRUN: 1 << 8,
  SINGLE_ISSUER: 1 << 12,
} as const;

/** `IORING_FEAT_*` bits reported by the kernel. */
export const Feature = {
  SINGLE_MMAP: 1 << 0,
  NODROP: 1 << 1,
  EXT_ARG: 1 << 8,
} as const;

/** `IORING_FSYNC_DATASYNC`. */
export const FSYNC_DATASYNC = 1;
/** `IORING_ASYNC_CANCEL_ANY`: cancel every request (kernel 5.19+). */
export const ASYNC_CANCEL_ANY = 1 << 2;
/** `IORING_ASYNC_CANCEL_ALL`. */
export const ASYNC_CANCEL_ALL = 1 << 0;

/** `FALLOC_FL_*` modes (`linux/falloc.h`). */
export const Falloc = {
  KEEP_SIZE: 0x01,
  PUNCH_HOLE: 0x02,
  ZERO_RANGE: 0x10,
} as const;

/** `struct io_uring_params` size (for `io_uring_queue_init_params`). */
export const PARAMS_SIZE = 120;
/** Offsets inside `struct io_uring_params`. */
export const PARAMS = {
  sqEntries: 0,
  cqEntries: 4,
  flags: 8,
  features: 20,
} as const;

/** `struct __kernel_timespec` and `struct iovec` sizes. */
export const TIMESPEC_SIZE = 16;
/** Size of `struct iovec` on LP64. */
export const IOVEC_SIZE = 16;
