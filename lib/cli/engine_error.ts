/**
 * Turns a failure to start the I/O engine (liburing missing, io_uring unavailable) into one
 * line that says how to fix it.
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

/**
 * Explains why the engine could not start, with the fix.
 *
 * @param err What `KcopydClient.create()` or `Ring.create()` threw.
 * @returns A {@linkcode UsageError} (exit code 2: nothing was written), or `err` itself when it
 *   is not about the engine.
 * @example
 * ```ts
 * import { engineError } from "./engine_error.ts";
 * const err = Object.assign(new Error("io_uring_queue_init failed"), {
 *   name: "UringError",
 *   code: "EPERM",
 * });
 * console.log((engineError(err) as Error).message); // "io_uring is not permitted here (EPERM): ..."
 * ```
 */
export function engineError(err: unknown): unknown {
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === "LiburingLoadError") return new UsageError(e.message ?? String(err));
  if (e?.name !== "UringError") return err;
  switch (e.code) {
    case "EPERM":
    case "EACCES":
      return new UsageError(
        `io_uring is not permitted here (${e.code}): it is disabled by the ` +
          `kernel.io_uring_disabled sysctl (fix: sysctl -w kernel.io_uring_disabled=0) or blocked ` +
          `by a seccomp profile (containers: allow io_uring_setup, io_uring_enter and ` +
          `io_uring_register, e.g. docker run --security-opt seccomp=unconfined)`,
      );
    case "ENOSYS":
      return new UsageError(
        "io_uring is not available (ENOSYS): the kernel lacks it or a seccomp profile hides it; " +
          "use Linux 5.19 or newer built with CONFIG_IO_URING, and allow io_uring_setup, " +
          "io_uring_enter and io_uring_register in containers",
      );
    case "ENOMEM":
      return new UsageError(
        "Cannot set up io_uring (ENOMEM): not enough lockable memory; raise the limit " +
          "(ulimit -l) or ask for less with --memory",
      );
    default:
      return new UsageError(`Cannot set up io_uring: ${e.message}`);
  }
}
