/**
 * Sizes and sector counts as people type them: `2048` (sectors), `512K`, `4MiB`, `1GB`, `512B`.
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";

const UNITS: Record<string, bigint> = {
  B: 1n,
  k: 1024n,
  K: 1024n,
  KiB: 1024n,
  M: 1024n ** 2n,
  MiB: 1024n ** 2n,
  G: 1024n ** 3n,
  GiB: 1024n ** 3n,
  T: 1024n ** 4n,
  TiB: 1024n ** 4n,
  kB: 1000n,
  KB: 1000n,
  MB: 1000n ** 2n,
  GB: 1000n ** 3n,
  TB: 1000n ** 4n,
};

const SIZE = /^(\d+)([A-Za-z]*)$/;

/**
 * Parses a size with a unit into bytes; a plain number means `plain` units (bytes or sectors).
 *
 * @param text What was typed.
 * @param what How to name it in an error, e.g. `"--memory"`.
 * @param plain Bytes per unit of a plain number (1 for byte options, 512 for sectors).
 * @returns Bytes.
 * @throws {UsageError} For anything else.
 * @example
 * ```ts
 * import { parseBytes } from "./units.ts";
 * console.log(parseBytes("512K", "--memory"), parseBytes("1KB", "--rate")); // 524288n 1000n
 * ```
 */
export function parseBytes(text: string, what: string, plain = 1n): bigint {
  const m = SIZE.exec(text.trim());
  if (!m) {
    throw new UsageError(
      `${what}: "${text}" is not a size: use a number with an optional unit (B, K, KiB, M, MiB, G, GiB, T, TiB, KB, MB, GB, TB)`,
    );
  }
  const [, digits, unit] = m;
  if (unit === "") return BigInt(digits) * plain;
  const mult = UNITS[unit];
  if (mult === undefined) {
    throw new UsageError(
      `${what}: unknown unit "${unit}" in "${text}": use B, K, KiB, M, MiB, G, GiB, T, TiB, KB, MB, GB or TB`,
    );
  }
  return BigInt(digits) * mult;
}

/**
 * Parses a sector position or count: a plain number is 512-byte sectors, a number with a unit
 * is bytes and must be whole sectors.
 *
 * @param text What was typed.
 * @param what How to name it in an error.
 * @returns Sectors.
 * @throws {UsageError} For a malformed value or one that is not whole sectors.
 * @example
 * ```ts
 * import { parseSectors } from "./units.ts";
 * console.log(parseSectors("2048", "sector"), parseSectors("1MiB", "count")); // 2048n 2048n
 * ```
 */
export function parseSectors(text: string, what: string): bigint {
  const bytes = parseBytes(text, what, 512n);
  if (bytes % 512n !== 0n) {
    throw new UsageError(
      `${what}: "${text}" is ${bytes} bytes, not a whole number of 512-byte sectors`,
    );
  }
  return bytes / 512n;
}

/**
 * True when `text` parses as a sector value.
 *
 * @param text What was typed.
 * @returns Whether {@linkcode parseSectors} accepts it.
 * @example
 * ```ts
 * import { isSectorValue } from "./units.ts";
 * console.log(isSectorValue("8"), isSectorValue("4KB"), isSectorValue("file.img")); // true false false
 * ```
 */
export function isSectorValue(text: string): boolean {
  try {
    parseSectors(text, "");
    return true;
  } catch {
    return false;
  }
}

/**
 * Formats bytes for people: `1.50 GiB`, `512 KiB`, `100 B`.
 *
 * @param bytes A byte count.
 * @returns The text.
 * @example
 * ```ts
 * import { formatBytes } from "./units.ts";
 * console.log(formatBytes(1536), formatBytes(32 << 20)); // "1.50 KiB" "32.0 MiB"
 * ```
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
