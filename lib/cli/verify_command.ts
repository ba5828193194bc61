/**
 * `kcopyd verify SRC[:SECTOR[+COUNT]] DEST[:SECTOR]...`: byte-for-byte comparison.
 *
 * @module
 */
import type { BlockDevice } from "../block_device.ts";
import { openDevice } from "../device.ts";
import { compareRegions } from "./compare.ts";
import type { CliOptions } from "./options.ts";
import { parseRegionArg } from "./region_arg.ts";
import { openSource } from "./targets.ts";
import { UsageError } from "./usage_error.ts";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `verify`.
 *
 * @param opts Options; positionals are the source and destinations.
 * @returns 0 when every destination equals the source, 1 when any differs.
 */
export async function runVerify(opts: CliOptions): Promise<number> {
  const pos = opts.positionals;
  if (pos.length < 2) throw new UsageError("verify needs a source and at least one destination");
  const source = await openSource(pos[0]);
  const dests: { device: BlockDevice; sector: bigint; arg: string }[] = [];
  try {
    for (const arg of pos.slice(1)) {
      const r = parseRegionArg(arg, exists);
      let device: BlockDevice;
      try {
        device = await openDevice(r.path);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      dests.push({ device, sector: r.sector ?? 0n, arg });
      if (r.count !== undefined && r.count !== source.count) {
        throw new UsageError(
          `"${arg}": count ${r.count} differs from the source's ${source.count}`,
        );
      }
      if (dests.at(-1)!.sector + source.count > device.sizeSectors) {
        throw new UsageError(
          `"${arg}" is smaller than the range: sector ${r.sector ?? 0n} + ${source.count} > ` +
            `${device.sizeSectors} sectors`,
        );
      }
    }
    const t0 = performance.now();
    const results = await compareRegions(source, dests, source.count);
    const seconds = (performance.now() - t0) / 1000;
    const equal = results.every((r) => r.diffSectors === 0n);
    if (opts.json) {
      console.log(JSON.stringify({
        equal,
        bytes: Number(source.count) * 512,
        seconds: Number(seconds.toFixed(6)),
        dests: results.map((r, d) => ({
          path: dests[d].arg,
          equal: r.diffSectors === 0n,
          firstDiffSector: r.firstDiff === undefined ? null : String(r.firstDiff),
          diffSectors: String(r.diffSectors),
          ...(r.error ? { error: r.error } : {}),
        })),
      }));
    } else {
      results.forEach((r, d) => {
        const name = `dest ${d} "${dests[d].arg}"`;
        if (r.diffSectors === 0n) {
          if (!opts.quiet) console.log(`${name}: equal (${source.count} sectors)`);
        } else {
          console.log(
            `${name}: DIFFERS: first differing sector ${r.firstDiff}, ${r.diffSectors} of ` +
              `${source.count} sectors differ${r.error ? ` (read error ${r.error})` : ""}`,
          );
        }
      });
    }
    return equal ? 0 : 1;
  } finally {
    await source.device.close();
    for (const d of dests) await d.device.close();
  }
}
