/**
 * NBD protocol numbers (NetworkBlockDevice/nbd `doc/proto.md`).
 *
 * @module
 */

/** Magic numbers. */
export const Magic = {
  NBDMAGIC: 0x4e42444d41474943n,
  IHAVEOPT: 0x49484156454f5054n,
  OPT_REPLY: 0x3e889045565a9n,
  REQUEST: 0x25609513,
  SIMPLE_REPLY: 0x67446698,
  STRUCTURED_REPLY: 0x668e33ef,
} as const;

/** Handshake flags (server) and client flags. */
export const Handshake = {
  FIXED_NEWSTYLE: 1,
  NO_ZEROES: 2,
} as const;

/** Option numbers. */
export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  STARTTLS: 5,
  GO: 7,
  STRUCTURED_REPLY: 8,
  SET_META_CONTEXT: 10,
} as const;

/** Option reply types. */
export const Rep = {
  ACK: 1,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005,
  ERR_UNKNOWN: 0x80000006,
  ERR_SHUTDOWN: 0x80000007,
  ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;

/** NBD_INFO types. */
export const Info = {
  EXPORT: 0,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags. */
export const Flag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** Commands. */
export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

/** Command flags. */
export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

/** Structured reply chunk types and flags. */
export const Chunk = {
  FLAG_DONE: 1,
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 32769,
  ERROR_OFFSET: 32770,
} as const;

/** NBD error values (the same numbers as Linux errno). */
export const NbdErr = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

const KNOWN_ERRORS: ReadonlySet<number> = new Set(Object.values(NbdErr));

/**
 * Maps an NBD error to a Linux errno: the protocol uses the Linux numbers; values outside the
 * protocol's list become EIO.
 *
 * @param err The error field of a reply.
 * @returns A positive errno.
 * @example
 * ```ts
 * import { nbdErrno } from "./protocol.ts";
 * console.log(nbdErrno(28), nbdErrno(9999)); // 28 5
 * ```
 */
export function nbdErrno(err: number): number {
  return KNOWN_ERRORS.has(err) ? err : NbdErr.EIO;
}
