/**
 * Checks a job's regions before any I/O and turns them into byte ranges.
 *
 * @module
 */
import type { BlockDevice } from "./block_device.ts";
import type { IoRegion, SectorValue } from "./types.ts";
import { KcopydFlags } from "./types.ts";

/** A checked region: sectors as bigint, bytes as safe integers. */
export interface Range {
  readonly device: BlockDevice;
  readonly sector: bigint;
  readonly count: bigint;
  /** Byte offset on the device. */
  readonly offset: number;
  /** Byte length. */
  readonly length: number;
}

const MAX_BYTES = BigInt(Number.MAX_SAFE_INTEGER);

function toSector(value: unknown, what: string): bigint {
  if (typeof value === "bigint") {
    if (value < 0n) throw new RangeError(`${what} must not be negative: got ${value}`);
    return value;
  }
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`${what} must be a non-negative safe integer or a bigint: got ${value}`);
    }
    return BigInt(value);
  }
  throw new TypeError(`${what} must be a bigint or a number: got ${typeof value}`);
}

function isDevice(value: unknown): value is BlockDevice {
  return typeof value === "object" && value !== null && "sizeSectors" in value &&
    "endpoint" in value && typeof (value as BlockDevice).endpoint === "function";
}

/** Regions ending below this sector are checked in plain numbers (2^44 sectors: 2^53 bytes). */
const FAST_SECTORS = 2 ** 44;

/** A sector value as a plain number when it is small enough to be exact, else -1. */
function small(value: unknown): number {
  if (typeof value === "bigint") {
    return value >= 0n && value <= FAST_SECTORS ? Number(value) : -1;
  }
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 &&
      value <= FAST_SECTORS
    ? value
    : -1;
}

/**
 * Checks one region: its kind, its numbers, and that it lies inside its device.
 *
 * @param region What the caller passed.
 * @param what How to name it in errors, e.g. `"source"`, or a destination's index.
 * @param defaultCount The count to use when the region has none (copy destinations).
 * @returns The checked range.
 */
export function checkRegion(
  region: unknown,
  what: string | number,
  defaultCount?: bigint,
): Range {
  if (typeof region === "object" && region !== null) {
    // The common case in plain numbers: no bigint arithmetic, no strings built.
    const r = region as IoRegion;
    const dev = r.device;
    const sector = small(r.sector);
    const count = r.count === undefined && defaultCount !== undefined
      ? small(defaultCount)
      : small(r.count);
    if (isDevice(dev) && !dev.closed && sector >= 0 && count >= 0) {
      const perBlock = dev.logicalBlockSize / 512;
      if (
        sector + count < FAST_SECTORS && sector + count <= Number(dev.sizeSectors) &&
        sector % perBlock === 0 && count % perBlock === 0
      ) {
        return {
          device: dev,
          sector: typeof r.sector === "bigint" ? r.sector : BigInt(sector),
          count: r.count === undefined
            ? defaultCount!
            : typeof r.count === "bigint"
            ? r.count
            : BigInt(count),
          offset: sector * 512,
          length: count * 512,
        };
      }
    }
  }
  return checkRegionExactly(
    region,
    typeof what === "number" ? `dests[${what}]` : what,
    defaultCount,
  );
}

/** The exact path (bigint arithmetic), which also names every kind of mistake. */
function checkRegionExactly(region: unknown, what: string, defaultCount?: bigint): Range {
  if (typeof region !== "object" || region === null) {
    throw new TypeError(`${what} must be a region { device, sector, count }: got ${region}`);
  }
  const r = region as IoRegion;
  if (!isDevice(r.device)) {
    throw new TypeError(`${what}.device must be a device from openDevice(): got ${r.device}`);
  }
  if (r.device.closed) throw new TypeError(`${what}.device "${r.device.path}" is closed`);
  const sector = toSector(r.sector, `${what}.sector`);
  const count = r.count === undefined && defaultCount !== undefined
    ? defaultCount
    : toSector(r.count as SectorValue, `${what}.count`);
  const dev = r.device;
  if (sector + count > dev.sizeSectors) {
    throw new RangeError(
      `Region exceeds device size: sector ${sector} + ${count} > ${dev.sizeSectors} sectors ` +
        `of "${dev.path}" (${what})`,
    );
  }
  if ((sector + count) * 512n > MAX_BYTES) {
    throw new RangeError(`${what} ends beyond 2^53 bytes: sector ${sector} + ${count}`);
  }
  const lbs = BigInt(dev.logicalBlockSize);
  if ((sector * 512n) % lbs !== 0n || (count * 512n) % lbs !== 0n) {
    throw new RangeError(
      `${what} is not aligned to the ${dev.logicalBlockSize}-byte logical block size of ` +
        `"${dev.path}": sector ${sector} + ${count} must be multiples of ` +
        `${dev.logicalBlockSize / 512} sectors`,
    );
  }
  return {
    device: dev,
    sector,
    count,
    offset: Number(sector * 512n),
    length: Number(count * 512n),
  };
}

/** True when two ranges share storage: same device id and intersecting sectors. */
export function overlaps(a: Range, b: Range): boolean {
  return a.device.id === b.device.id && a.sector < b.sector + b.count &&
    b.sector < a.sector + a.count;
}

/**
 * Checks the destination list: its kind and size, writability and mutual overlap.
 *
 * @param dests What the caller passed.
 * @param max Most destinations allowed.
 * @param defaultCount Count for destinations without one (copies), or undefined (zero).
 * @returns Checked ranges.
 */
export function checkDests(dests: unknown, max: number, defaultCount?: bigint): Range[] {
  if (!Array.isArray(dests)) {
    throw new TypeError(`Destinations must be an array of regions: got ${typeof dests}`);
  }
  if (dests.length === 0) throw new RangeError("At least one destination is needed: got 0");
  if (dests.length > max) {
    throw new RangeError(
      `Too many destinations: ${dests.length} > ${max} (raise maxDestinations, up to 32)`,
    );
  }
  const ranges: Range[] = [];
  for (let i = 0; i < dests.length; i++) {
    const r = checkRegion(dests[i], i, defaultCount);
    if (!r.device.writable) {
      throw new TypeError(
        `dests[${i}] device "${r.device.path}" is opened read-only: open it with { write: true }`,
      );
    }
    if (defaultCount !== undefined && r.count !== defaultCount) {
      throw new RangeError(
        `dests[${i}].count must equal the source count: ${r.count} != ${defaultCount}`,
      );
    }
    for (let j = 0; j < i; j++) {
      if (overlaps(r, ranges[j])) {
        throw new RangeError(
          `dests[${j}] and dests[${i}] overlap on the same storage: "${ranges[j].device.path}" ` +
            `sectors ${ranges[j].sector}+${ranges[j].count} and "${r.device.path}" ` +
            `sectors ${r.sector}+${r.count}`,
        );
      }
    }
    ranges.push(r);
  }
  return ranges;
}

/**
 * Checks job flags.
 *
 * @param flags What the caller passed.
 * @returns The flags, with IGNORE_ERROR cleared when WRITE_SEQ is set.
 */
export function checkFlags(flags: unknown): number {
  if (flags === undefined) return 0;
  const known = KcopydFlags.IGNORE_ERROR | KcopydFlags.WRITE_SEQ;
  if (typeof flags !== "number" || !Number.isInteger(flags) || (flags & ~known) !== 0) {
    throw new TypeError(`flags must be KcopydFlags bits: got ${flags}`);
  }
  return flags & KcopydFlags.WRITE_SEQ ? flags & ~KcopydFlags.IGNORE_ERROR : flags;
}
