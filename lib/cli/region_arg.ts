/**
 * Region arguments: `PATH[:SECTOR[+COUNT]]`. The suffix is the last `:` followed by a valid
 * region; a path that exists as written is always taken whole, and NBD URIs keep their
 * `host:port` (their region suffix follows the complete URI).
 *
 * @module
 */
import { isSectorValue, parseSectors } from "./units.ts";
import { UsageError } from "./usage_error.ts";

/** A parsed region argument. */
export interface RegionArg {
  /** The path or URI. */
  path: string;
  /** First sector, if given. */
  sector?: bigint;
  /** Sector count, if given. */
  count?: bigint;
}

const URI = /^nbd(\+unix|s|s\+unix)?:\/\//;

/**
 * True for NBD URIs (`nbd://`, `nbds://`, `nbd+unix://`, `nbds+unix://`): they are never looked
 * up on disk.
 *
 * @param path A path or URI.
 * @returns Whether it is an NBD URI.
 * @example
 * ```ts
 * import { isUri } from "./region_arg.ts";
 * console.log(isUri("nbd://host:10809/disk"), isUri("/dev/nbd0")); // true false
 * ```
 */
export function isUri(path: string): boolean {
  return URI.test(path);
}

/**
 * Splits `PATH[:SECTOR[+COUNT]]`.
 *
 * @param arg The argument.
 * @param exists Whether a path exists as written (then it is taken whole).
 * @returns The parts; `sector` and `count` only when given.
 * @throws {UsageError} For an empty path, and for a malformed region after a path that exists.
 * @example
 * ```ts
 * import { parseRegionArg } from "./region_arg.ts";
 * const exists = (p: string) => p === "disk.img";
 * console.log(parseRegionArg("disk.img:2048+1GiB", exists));
 * // { path: "disk.img", sector: 2048n, count: 2097152n }
 * console.log(parseRegionArg("nbd://host:10809/disk:8+4MiB", exists));
 * // { path: "nbd://host:10809/disk", sector: 8n, count: 8192n }
 * ```
 */
export function parseRegionArg(arg: string, exists: (path: string) => boolean): RegionArg {
  if (arg === "") throw new UsageError("An empty path was given");
  if (!isUri(arg) && exists(arg)) return { path: arg };
  const colon = arg.lastIndexOf(":");
  if (colon > 0) {
    const suffix = arg.slice(colon + 1);
    const path = arg.slice(0, colon);
    // A URI's own "host:port" is never a region: the URI needs its "/" after it.
    const uriOk = !isUri(arg) || /^nbd[^:]*:\/\/[^/]*\//.test(path);
    const [s, c, ...rest] = suffix.split("+");
    if (uriOk && rest.length === 0 && isSectorValue(s) && (c === undefined || isSectorValue(c))) {
      const region: RegionArg = { path, sector: parseSectors(s, `sector in "${arg}"`) };
      if (c !== undefined) region.count = parseSectors(c, `count in "${arg}"`);
      return region;
    }
    // The part before the colon exists: the suffix was meant as a region, so say what is wrong.
    if (!isUri(arg) && exists(path)) {
      if (rest.length > 0) {
        throw new UsageError(`"${arg}": a region is SECTOR[+COUNT], got "${suffix}"`);
      }
      parseSectors(s, `sector in "${arg}"`);
      if (c !== undefined) parseSectors(c, `count in "${arg}"`);
    }
  }
  return { path: arg };
}
