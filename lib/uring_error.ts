/**
 * The error a failed io_uring operation becomes.
 *
 * @module
 */
import { errnoName } from "./errno.ts";
import { strerror } from "../ffi/libc.ts";

/**
 * A failed io_uring operation: the completion's negative `res` as `errno` and `code`.
 *
 * @example
 * ```ts ignore
 * try {
 *   await ring.run((sqe) => prepRead(sqe, -1, buf.address, 4096, 0));
 * } catch (err) {
 *   if (err instanceof UringError) console.log(err.code, err.op); // "EBADF" "read"
 * }
 * ```
 */
export class UringError extends Error {
  /** The positive errno value, e.g. 5. */
  readonly errno: number;
  /** The errno's symbolic name, e.g. `"EIO"`. */
  readonly code: string;
  /** The operation that failed, e.g. `"read"`, `"write_fixed"`, `"io_uring_queue_init"`. */
  readonly op: string;

  /**
   * Creates the error from a failed operation.
   *
   * @param op The failed operation's name.
   * @param errno The positive errno value.
   * @param detail Optional words placed before the system message.
   */
  constructor(op: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    super(`${detail ? detail + ": " : ""}${op} failed: ${strerror(errno)} (${code})`);
    this.name = "UringError";
    this.errno = errno;
    this.code = code;
    this.op = op;
  }
}
