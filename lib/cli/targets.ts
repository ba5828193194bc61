/**
 * Opens and checks the devices a command names, before anything is written: the source must
 * exist, destinations must be large enough, writable, not the source's sectors, and (for block
 * devices holding a filesystem or partition table) allowed with `--force`. Missing destination
 * files are created at the needed size.
 *
 * @module
 */
import type { BlockDevice } from "../block_device.ts";
import { openDevice } from "../device.ts";
import { isUri, parseRegionArg } from "./region_arg.ts";
import { readSignature } from "./signature.ts";
import { UsageError } from "./usage_error.ts";

/** An opened, checked region. */
export interface Target {
  /** The argument as typed. */
  arg: string;
  /** The device. */
  device: BlockDevice;
  /** First sector. */
  sector: bigint;
  /** Sectors. */
  count: bigint;
  /** True when the file was created by this command. */
  created: boolean;
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function open(path: string, write: boolean): Promise<BlockDevice> {
  try {
    return await openDevice(path, { write });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * Opens the source region `SRC[:SECTOR[+COUNT]]` read-only.
 *
 * @param arg The argument.
 * @returns The checked region (count defaults to the rest of the device).
 */
export async function openSource(arg: string): Promise<Target> {
  const r = parseRegionArg(arg, existsSync);
  if (!isUri(r.path) && !existsSync(r.path)) {
    throw new UsageError(`Source "${r.path}" does not exist`);
  }
  const device = await open(r.path, false);
  const sector = r.sector ?? 0n;
  if (sector > device.sizeSectors) {
    await device.close();
    throw new UsageError(
      `Source sector ${sector} is past the end of "${r.path}" (${device.sizeSectors} sectors)`,
    );
  }
  const count = r.count ?? device.sizeSectors - sector;
  if (sector + count > device.sizeSectors) {
    await device.close();
    throw new UsageError(
      `Source range exceeds "${r.path}": sector ${sector} + ${count} > ${device.sizeSectors} sectors`,
    );
  }
  return { arg, device, sector, count, created: false };
}

/** Options for {@linkcode openDestinations}. */
export interface DestOptions {
  /** Sectors each destination receives; undefined for `zero` (each has its own). */
  count?: bigint;
  /** The source, for overlap checks. */
  source?: Target;
  /** Allow writing over filesystem and partition-table signatures. */
  force: boolean;
  /** Create missing destination files (copy: yes; zero: only with an explicit count). */
  create: boolean;
}

/**
 * Opens destination regions for writing after checking everything that can be checked.
 *
 * @param args `DEST[:SECTOR[+COUNT]]` arguments.
 * @param options Count, source, --force.
 * @returns The checked regions; on error every device opened so far is closed.
 */
export async function openDestinations(args: string[], options: DestOptions): Promise<Target[]> {
  const opened: Target[] = [];
  try {
    const parsed = args.map((a) => ({ arg: a, ...parseRegionArg(a, existsSync) }));
    const missing = parsed.filter((p) => !isUri(p.path) && !existsSync(p.path));
    // Existing destinations first: nothing is created unless all of them are fine.
    for (const p of parsed.filter((p) => !missing.includes(p))) {
      const st = isUri(p.path) ? undefined : Deno.statSync(p.path);
      if (st?.isDirectory) {
        throw new UsageError(`Destination "${p.path}" is a directory: give a device or image file`);
      }
      const device = await open(p.path, true);
      const t: Target = { arg: p.arg, device, sector: 0n, count: 0n, created: false };
      opened.push(t);
      check(t, p, options);
      if (device.isBlockDevice && !isUri(p.path) && !options.force) {
        const sig = await readSignature(p.path);
        if (sig) {
          throw new UsageError(
            `Destination "${p.path}" holds an existing ${sig}: writing would destroy it; ` +
              `add --force if that is what you want`,
          );
        }
      }
    }
    for (const p of missing) {
      const count = p.count ?? options.count;
      if (!options.create || count === undefined) {
        throw new UsageError(`Destination "${p.path}" does not exist`);
      }
      const bytes = ((p.sector ?? 0n) + count) * 512n;
      try {
        await Deno.writeFile(p.path, new Uint8Array(0), { createNew: true });
        await Deno.truncate(p.path, Number(bytes));
      } catch (err) {
        throw new UsageError(`Cannot create destination "${p.path}": ${(err as Error).message}`);
      }
      const device = await open(p.path, true);
      const t: Target = { arg: p.arg, device, sector: 0n, count: 0n, created: true };
      opened.push(t);
      check(t, p, options);
    }
    // Keep the order of the arguments.
    return parsed.map((p) => opened.find((t) => t.arg === p.arg)!);
  } catch (err) {
    for (const t of opened) await t.device.close();
    throw err;
  }
}

function check(
  t: Target,
  p: { path: string; sector?: bigint; count?: bigint },
  options: DestOptions,
): void {
  const dev = t.device;
  t.sector = p.sector ?? 0n;
  if (options.count !== undefined && p.count !== undefined && p.count !== options.count) {
    throw new UsageError(
      `Destination "${p.path}": count ${p.count} differs from the source's ${options.count} sectors`,
    );
  }
  t.count = p.count ?? options.count ?? (dev.sizeSectors - t.sector);
  if (t.sector + t.count > dev.sizeSectors) {
    throw new UsageError(
      `Destination "${p.path}" is too small: sector ${t.sector} + ${t.count} > ` +
        `${dev.sizeSectors} sectors; nothing was written`,
    );
  }
  const s = options.source;
  if (
    s && s.device.id === dev.id && t.sector < s.sector + s.count && s.sector < t.sector + t.count
  ) {
    throw new UsageError(
      `Destination "${p.path}" overlaps the source "${s.arg}" (same ${
        dev.isBlockDevice ? "device" : "file"
      }): sectors ${t.sector}+${t.count} and ${s.sector}+${s.count}`,
    );
  }
}
