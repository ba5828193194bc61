/**
 * Looking paths up without mistaking "not allowed to look" for "not there": Deno refuses its
 * file APIs on `/dev` paths unless the program runs with `--allow-all`.
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

/**
 * Stats `path`.
 *
 * @param path A path.
 * @returns Its info, or undefined when it does not exist.
 * @throws {UsageError} When it cannot be looked at (permissions), naming the path and the fix.
 * @example
 * ```ts
 * import { statPath } from "./stat.ts";
 * console.log(statPath("/no/such/file")); // undefined
 * ```
 */
export function statPath(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw new UsageError(
        `Cannot look at "${path}": ${(err as Error).message} (kcopyd needs --allow-all: ` +
          `block devices live under /dev)`,
      );
    }
    throw err;
  }
}

/**
 * True when `path` exists.
 *
 * @param path A path.
 * @returns Whether it exists.
 * @throws {UsageError} When it cannot be looked at (permissions).
 * @example
 * ```ts
 * import { pathExists } from "./stat.ts";
 * console.log(pathExists("/")); // true
 * ```
 */
export function pathExists(path: string): boolean {
  return statPath(path) !== undefined;
}
