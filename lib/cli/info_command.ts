/**
 * `kcopyd info PATH...`: size, block sizes, kind and O_DIRECT support of each path.
 *
 * @module
 */
import { openDevice } from "../device.ts";
import type { CliOptions } from "./options.ts";
import { UsageError } from "./usage_error.ts";
import { formatBytes } from "./units.ts";

/** One device as `info --json` prints it. */
export interface DeviceInfo {
  path: string;
  sizeBytes: number;
  sizeSectors: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  isBlockDevice: boolean;
  direct: boolean;
}

/**
 * Runs `info`.
 *
 * @param opts Options; positionals are the paths.
 * @returns The exit code.
 * @throws {UsageError} For a path that cannot be opened (missing, a directory, not permitted).
 * @example
 * ```ts ignore
 * await runInfo(parseOptions(["info", "/dev/loop0", "--json"]));
 * ```
 */
export async function runInfo(opts: CliOptions): Promise<number> {
  if (opts.positionals.length === 0) throw new UsageError("info needs at least one path");
  const out: DeviceInfo[] = [];
  for (const path of opts.positionals) {
    let dev;
    try {
      dev = await openDevice(path);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    out.push({
      path,
      sizeBytes: Number(dev.sizeBytes),
      sizeSectors: Number(dev.sizeSectors),
      logicalBlockSize: dev.logicalBlockSize,
      physicalBlockSize: dev.physicalBlockSize,
      isBlockDevice: dev.isBlockDevice,
      direct: dev.direct,
    });
    await dev.close();
  }
  if (opts.json) {
    console.log(JSON.stringify(out, null, 2));
    return 0;
  }
  for (const d of out) {
    console.log(`${d.path}:`);
    console.log(
      `  size:            ${d.sizeBytes} bytes (${
        formatBytes(d.sizeBytes)
      }), ${d.sizeSectors} sectors of 512 bytes`,
    );
    console.log(
      `  block sizes:     logical ${d.logicalBlockSize}, physical ${d.physicalBlockSize}`,
    );
    console.log(`  kind:            ${d.isBlockDevice ? "block device" : "regular file"}`);
    console.log(`  O_DIRECT:        ${d.direct ? "yes" : "no (page cache)"}`);
  }
  return 0;
}
