/**
 * The error for anything a person got wrong before the first write: bad usage, bad input,
 * unusable devices. The CLI prints its message on one line and exits with 2.
 *
 * @module
 */

/**
 * A mistake found before any data was written (exit code 2).
 *
 * @example
 * ```ts
 * import { UsageError } from "./usage_error.ts";
 * const err = new UsageError('Source "/dev/nope" does not exist');
 * console.log(`kcopyd: error: ${err.message}`);
 * ```
 */
export class UsageError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong, naming the path, value or option, and how to fix it.
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
