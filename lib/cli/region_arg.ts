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

/** True for NBD URIs. */
export function isUri(path: string): boolean {
  return URI.test(path);
}

/**
 * Splits `PATH[:SECTOR[+COUNT]]`.
 *
 * @param arg The argument.
 * @param exists Whether a path exists as written (then it is taken whole).
 * @returns The parts.
 * @throws {UsageError} For an empty path.
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
      return {
        path,
        sector: parseSectors(s, `sector in "${arg}"`),
        count: c === undefined ? undefined : parseSectors(c, `count in "${arg}"`),
      };
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
