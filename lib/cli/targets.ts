/**
 * Opens and checks the regions a command names, before anything is written: the source must
 * exist; destinations must be writable, large enough, aligned to their logical block size,
 * apart from the source's sectors and from each other, and (block devices holding a
 * filesystem or partition table) allowed with `--force`. Destination files that do not exist
 * are created at the needed size only in a separate step, {@linkcode Destinations.create}, and
 * removed again if the command stops before its first write.
 *
 * @module
 */
import { basename, dirname, resolve } from "node:path";
import type { BlockDevice } from "../block_device.ts";
import { openDevice } from "../device.ts";
import { isUri, parseRegionArg } from "./region_arg.ts";
import { readSignature } from "./signature.ts";
import { pathExists, statPath } from "./stat.ts";
import { UsageError } from "./usage_error.ts";

/** An opened, checked region. */
export interface Target {
  /** The argument as typed. */
  arg: string;
  /** The path or URI (the argument without its region suffix). */
  path: string;
  /** The device. */
  device: BlockDevice;
  /** First sector. */
  sector: bigint;
  /** Sectors. */
  count: bigint;
  /** True when the file was created by this command. */
  created: boolean;
}

/** Most destinations of one copy (the engine's limit). */
export const MAX_DESTINATIONS = 32;

async function open(path: string, write: boolean): Promise<BlockDevice> {
  try {
    return await openDevice(path, { write });
  } catch (err) {
    const e = err as Error;
    throw e?.name === "DeviceError" || e instanceof TypeError ? new UsageError(e.message) : err;
  }
}

/** Refuses a region that is not a whole number of the device's logical blocks. */
function checkAlignment(what: string, t: { device: BlockDevice; sector: bigint; count: bigint }) {
  const per = BigInt(t.device.logicalBlockSize / 512);
  if (per > 1n && (t.sector % per !== 0n || t.count % per !== 0n)) {
    throw new UsageError(
      `${what} has ${t.device.logicalBlockSize}-byte logical blocks: sector ${t.sector} and ` +
        `count ${t.count} must be multiples of ${per} sectors`,
    );
  }
}

function overlap(a: Target, b: Target): boolean {
  return a.device.id === b.device.id && a.sector < b.sector + b.count &&
    b.sector < a.sector + a.count;
}

/**
 * Opens the source region `SRC[:SECTOR[+COUNT]]` read-only.
 *
 * @param arg The argument.
 * @returns The checked region (count defaults to the rest of the device).
 * @throws {UsageError} When it is missing, a directory, unreadable, or the range is outside it.
 * @example
 * ```ts ignore
 * const src = await openSource("/dev/loop0:2048+1GiB");
 * console.log(src.sector, src.count); // 2048n 2097152n
 * await src.device.close();
 * ```
 */
export async function openSource(arg: string): Promise<Target> {
  const r = parseRegionArg(arg, pathExists);
  if (!isUri(r.path) && !pathExists(r.path)) {
    throw new UsageError(`Source "${r.path}" does not exist`);
  }
  const device = await open(r.path, false);
  try {
    const sector = r.sector ?? 0n;
    if (sector > device.sizeSectors) {
      throw new UsageError(
        `Source sector ${sector} is past the end of "${r.path}" (${device.sizeSectors} sectors)`,
      );
    }
    const count = r.count ?? device.sizeSectors - sector;
    if (sector + count > device.sizeSectors) {
      throw new UsageError(
        `Source range exceeds "${r.path}": sector ${sector} + ${count} > ` +
          `${device.sizeSectors} sectors`,
      );
    }
    if (count === 0n) throw new UsageError(`Source region "${arg}" is empty (0 sectors)`);
    const t: Target = { arg, path: r.path, device, sector, count, created: false };
    checkAlignment(`Source "${r.path}"`, t);
    return t;
  } catch (err) {
    await device.close();
    throw err;
  }
}

/** Options for {@linkcode Destinations.check}. */
export interface DestOptions {
  /** Sectors each destination receives (copy); undefined for `zero` (each has its own). */
  count?: bigint;
  /** The source, for overlap checks. */
  source?: Target;
  /** Allow writing over filesystem and partition-table signatures. */
  force: boolean;
}

interface Pending {
  index: number;
  arg: string;
  path: string;
  sector: bigint;
  count: bigint;
}

/**
 * The destinations of a command: checked existing ones, open for writing, and missing files
 * to be created.
 *
 * @example
 * ```ts ignore
 * const dests = await Destinations.check(["/dev/loop1:8", "new.img"], { count: 2048n, force: false });
 * await dests.create(); // only now is new.img made, 2048 sectors long
 * await dests.close({ removeCreated: false });
 * ```
 */
export class Destinations {
  readonly #slots: (Target | undefined)[];
  readonly #pending: Pending[];
  #closed = false;

  private constructor(slots: (Target | undefined)[], pending: Pending[]) {
    this.#slots = slots;
    this.#pending = pending;
  }

  /**
   * Parses, opens and checks every destination argument; creates nothing.
   *
   * @param args `DEST[:SECTOR[+COUNT]]` arguments.
   * @param options Count, source, --force.
   * @returns The checked set; on error every device opened so far is closed.
   * @throws {UsageError} Naming the destination and what is wrong with it.
   */
  static async check(args: string[], options: DestOptions): Promise<Destinations> {
    if (args.length > MAX_DESTINATIONS) {
      throw new UsageError(
        `Too many destinations: ${args.length} (at most ${MAX_DESTINATIONS} per command)`,
      );
    }
    const slots: (Target | undefined)[] = args.map(() => undefined);
    const pending: Pending[] = [];
    const set = new Destinations(slots, pending);
    try {
      for (const [index, arg] of args.entries()) {
        const r = parseRegionArg(arg, pathExists);
        if (r.count === 0n) throw new UsageError(`Destination region "${arg}" is empty`);
        if (options.count !== undefined && r.count !== undefined && r.count !== options.count) {
          throw new UsageError(
            `Destination "${r.path}": count ${r.count} differs from the source's ` +
              `${options.count} sectors`,
          );
        }
        const st = isUri(r.path) ? undefined : statPath(r.path);
        if (!isUri(r.path) && st === undefined) {
          pending.push(planCreate(index, arg, r.path, r.sector ?? 0n, r.count ?? options.count));
          continue;
        }
        slots[index] = await checkExisting(arg, r, st, options);
      }
      const keys = new Map<string, string>();
      for (const p of pending) {
        const key = resolve(Deno.realPathSync(dirname(p.path)), basename(p.path));
        const first = keys.get(key);
        if (first !== undefined) {
          throw new UsageError(
            `Destination "${p.path}" is given twice ("${first}" and "${p.arg}")`,
          );
        }
        keys.set(key, p.arg);
      }
      set.#checkMutualOverlap();
      return set;
    } catch (err) {
      await set.close({ removeCreated: true });
      throw err;
    }
  }

  /** True when some destination is still to be created. */
  get needsCreate(): boolean {
    return this.#pending.length > 0;
  }

  /**
   * Creates the missing destination files at the needed size and opens them.
   *
   * @throws {UsageError} When a file cannot be created (those created so far are removed).
   */
  async create(): Promise<void> {
    try {
      for (const p of this.#pending.splice(0)) {
        try {
          await Deno.writeFile(p.path, new Uint8Array(0), { createNew: true });
        } catch (err) {
          throw new UsageError(
            `Cannot create destination "${p.path}": ${(err as Error).message}`,
          );
        }
        const t: Target = { ...p, device: undefined!, created: true };
        this.#slots[p.index] = t; // from here on, close() removes it on failure
        await Deno.truncate(p.path, Number((p.sector + p.count) * 512n));
        t.device = await open(p.path, true);
      }
      this.#checkMutualOverlap(); // e.g. one new file named twice through a symlinked folder
    } catch (err) {
      await this.close({ removeCreated: true });
      throw err;
    }
  }

  /** Every destination, in argument order (after {@linkcode Destinations.create}). */
  get targets(): Target[] {
    if (this.#pending.length > 0) throw new Error("Destinations.create() has not run");
    return this.#slots as Target[];
  }

  /**
   * Closes every device; with `removeCreated`, removes the files this command created.
   *
   * @param options Whether to remove created files (when nothing was written yet).
   */
  async close(options: { removeCreated: boolean }): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#slots) {
      if (!t) continue;
      await t.device?.close();
      if (t.created && options.removeCreated) await Deno.remove(t.path).catch(() => {});
    }
  }

  #checkMutualOverlap(): void {
    const open = this.#slots.filter((t): t is Target => t?.device !== undefined);
    for (let i = 0; i < open.length; i++) {
      for (let j = 0; j < i; j++) {
        if (overlap(open[i], open[j])) {
          throw new UsageError(
            `Destinations "${open[j].arg}" and "${open[i].arg}" overlap on the same ` +
              `${open[i].device.isBlockDevice ? "device" : "file"}: sectors ` +
              `${open[j].sector}+${open[j].count} and ${open[i].sector}+${open[i].count}`,
          );
        }
      }
    }
  }
}

function planCreate(
  index: number,
  arg: string,
  path: string,
  sector: bigint,
  count: bigint | undefined,
): Pending {
  if (count === undefined) {
    throw new UsageError(
      `Destination "${path}" does not exist (give a count, e.g. "${path}:0+1GiB", to create it)`,
    );
  }
  const dir = statPath(dirname(path));
  if (!dir?.isDirectory) {
    throw new UsageError(
      `Cannot create destination "${path}": folder "${dirname(path)}" does not exist`,
    );
  }
  return { index, arg, path, sector, count };
}

async function checkExisting(
  arg: string,
  r: { path: string; sector?: bigint; count?: bigint },
  st: Deno.FileInfo | undefined,
  options: DestOptions,
): Promise<Target> {
  if (st?.isDirectory) {
    throw new UsageError(`Destination "${r.path}" is a directory: give a device or image file`);
  }
  // Root may write anywhere; a file nobody may write is still not meant to be overwritten.
  if (st?.isFile && st.mode !== null && (st.mode & 0o222) === 0) {
    throw new UsageError(
      `Destination "${r.path}" is read-only (mode ${(st.mode & 0o777).toString(8)}): ` +
        `make it writable (chmod u+w) or choose another destination`,
    );
  }
  const device = await open(r.path, true);
  const sector = r.sector ?? 0n;
  const t: Target = { arg, path: r.path, device, sector, count: 0n, created: false };
  try {
    t.count = r.count ?? options.count ?? (device.sizeSectors - sector);
    if (t.count <= 0n) {
      throw new UsageError(
        `Destination "${r.path}": sector ${sector} is at or past its end ` +
          `(${device.sizeSectors} sectors)`,
      );
    }
    if (sector + t.count > device.sizeSectors) {
      throw new UsageError(
        `Destination "${r.path}" is too small: sector ${sector} + ${t.count} > ` +
          `${device.sizeSectors} sectors; nothing was written`,
      );
    }
    checkAlignment(`Destination "${r.path}"`, t);
    const s = options.source;
    if (s && overlap(s, t)) {
      throw new UsageError(
        `Destination "${r.path}" overlaps the source "${s.arg}" (same ${
          device.isBlockDevice ? "device" : "file"
        }): sectors ${t.sector}+${t.count} and ${s.sector}+${s.count}`,
      );
    }
    if (device.isBlockDevice && !isUri(r.path) && !options.force) {
      const sig = await readSignature(r.path);
      if (sig) {
        throw new UsageError(
          `Destination "${r.path}" holds an existing ${sig}: writing would destroy it; ` +
            `add --force if that is what you want`,
        );
      }
    }
    return t;
  } catch (err) {
    await device.close();
    throw err;
  }
}
