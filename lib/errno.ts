/**
 * Linux errno numbers and their symbolic names.
 *
 * @module
 */

const NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  15: "ENOTBLK",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  24: "EMFILE",
  25: "ENOTTY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  32: "EPIPE",
  38: "ENOSYS",
  61: "ENODATA",
  62: "ETIME",
  75: "EOVERFLOW",
  95: "EOPNOTSUPP",
  104: "ECONNRESET",
  107: "ENOTCONN",
  108: "ESHUTDOWN",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  114: "EALREADY",
  121: "EREMOTEIO",
  122: "EDQUOT",
  123: "ENOMEDIUM",
  125: "ECANCELED",
};

/** Errno values used by name in this package. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EISDIR: 21,
  EINVAL: 22,
  ENOSPC: 28,
  EROFS: 30,
  ETIME: 62,
  EOPNOTSUPP: 95,
  EALREADY: 114,
  ECANCELED: 125,
} as const;

/**
 * The symbolic name of a Linux errno, e.g. `errnoName(5) === "EIO"`.
 *
 * @param errno A positive errno value.
 * @returns The name, or `"E<number>"` for values not in the table.
 * @example
 * ```ts
 * import { errnoName } from "./errno.ts";
 * console.log(errnoName(28)); // "ENOSPC"
 * ```
 */
export function errnoName(errno: number): string {
  return NAMES[errno] ?? `E${errno}`;
}
