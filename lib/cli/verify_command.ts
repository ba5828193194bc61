/**
 * `kcopyd verify SRC[:SECTOR[+COUNT]] DEST[:SECTOR]...`: byte-for-byte comparison, read
 * through the engine's ring, all destinations in parallel.
 *
 * @module
 */
import type { BlockDevice } from "../block_device.ts";
import { openDevice } from "../device.ts";
import { compareRegions } from "./compare.ts";
import { engineError } from "./engine_error.ts";
import type { Interrupts } from "./interrupts.ts";
import type { CliOptions } from "./options.ts";
import { Progress } from "./progress.ts";
import { isUri, parseRegionArg } from "./region_arg.ts";
import { pathExists } from "./stat.ts";
import { openSource, type Target } from "./targets.ts";
import { UsageError } from "./usage_error.ts";

async function openDest(arg: string, count: bigint): Promise<Target> {
  const r = parseRegionArg(arg, pathExists);
  if (!isUri(r.path) && !pathExists(r.path)) {
    throw new UsageError(`Destination "${r.path}" does not exist`);
  }
  let device: BlockDevice;
  try {
    device = await openDevice(r.path);
  } catch (err) {
    throw (err as Error)?.name === "DeviceError" ? new UsageError((err as Error).message) : err;
  }
  const sector = r.sector ?? 0n;
  const t: Target = { arg, path: r.path, device, sector, count, created: false };
  if (r.count !== undefined && r.count !== count) {
    await device.close();
    throw new UsageError(`"${arg}": count ${r.count} differs from the source's ${count} sectors`);
  }
  if (sector + count > device.sizeSectors) {
    await device.close();
    throw new UsageError(
      `Destination "${r.path}" is smaller than the range: sector ${sector} + ${count} > ` +
        `${device.sizeSectors} sectors`,
    );
  }
  return t;
}

/**
 * Runs `verify`: prints, per destination, "equal" or the first differing sector (absolute,
 * 512-byte sectors) and how many sectors differ.
 *
 * @param opts Options; positionals are the source and destinations.
 * @param interrupts Signals: the comparison stops after the chunks in flight.
 * @returns 0 when every destination equals the source, 1 when any differs, 130/143 when
 *   interrupted.
 * @throws {UsageError} For a missing device or a range that does not fit.
 * @example
 * ```ts ignore
 * using interrupts = new Interrupts();
 * const code = await runVerify(parseOptions(["verify", "a.img", "b.img:8"]), interrupts);
 * ```
 */
export async function runVerify(opts: CliOptions, interrupts: Interrupts): Promise<number> {
  const pos = opts.positionals;
  if (pos.length < 2) throw new UsageError("verify needs a source and at least one destination");
  const source = await openSource(pos[0]);
  const dests: Target[] = [];
  try {
    for (const arg of pos.slice(1)) dests.push(await openDest(arg, source.count));
    let done = 0;
    const progress = new Progress("verify", () => ({
      done,
      total: Number(source.count * 512n),
      errors: new Map(),
    }), !opts.quiet && !opts.json && Deno.stderr.isTerminal());
    const t0 = performance.now();
    let cmp;
    try {
      cmp = await compareRegions(source, dests, source.count, {
        onProgress: (b) => done = b,
        stopped: () => interrupts.stopped,
      });
    } catch (err) {
      throw engineError(err);
    } finally {
      progress.stop();
    }
    const seconds = (performance.now() - t0) / 1000;
    const { results, comparedSectors } = cmp;
    const equal = results.every((r) => r.diffSectors === 0n);
    if (opts.json) {
      console.log(JSON.stringify({
        equal: equal && !interrupts.stopped,
        bytes: Number(comparedSectors * 512n),
        seconds: Number(seconds.toFixed(6)),
        dests: results.map((r, d) => ({
          path: dests[d].path,
          sector: Number(dests[d].sector),
          equal: r.diffSectors === 0n,
          firstDiffSector: r.firstDiff === undefined ? null : Number(r.firstDiff),
          diffSectors: Number(r.diffSectors),
          ...(r.error ? { error: r.error } : {}),
        })),
        ...(interrupts.signal
          ? { interrupted: interrupts.signal, comparedSectors: Number(comparedSectors) }
          : {}),
      }));
    } else {
      results.forEach((r, d) => {
        const name = `dest ${d} "${dests[d].arg}"`;
        if (r.diffSectors === 0n) {
          if (!opts.quiet) console.log(`${name}: equal (${comparedSectors} sectors)`);
        } else {
          console.log(
            `${name}: DIFFERS: first differing sector ${r.firstDiff}, ${r.diffSectors} of ` +
              `${comparedSectors} sectors differ${r.error ? ` (read error ${r.error})` : ""}`,
          );
        }
      });
    }
    if (interrupts.signal) {
      console.error(
        `kcopyd: interrupted by ${interrupts.signal}: compared only the first ` +
          `${comparedSectors} of ${source.count} sectors`,
      );
      return interrupts.exitCode;
    }
    return equal ? 0 : 1;
  } finally {
    await source.device.close();
    for (const d of dests) await d.device.close();
  }
}
