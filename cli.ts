/**
 * The `kcopyd` command: copy, zero, verify and info from a terminal.
 *
 * ```sh
 * deno run --allow-all cli.ts copy /dev/loop0 /dev/loop1 /dev/loop2 --verify
 * deno install -g -n kcopyd --allow-all ./cli.ts   # --allow-all: Deno guards /dev with it
 * ```
 *
 * @module
 */
import { runCopy } from "./lib/cli/copy_command.ts";
import { HELP } from "./lib/cli/help.ts";
import { runInfo } from "./lib/cli/info_command.ts";
import { Interrupts } from "./lib/cli/interrupts.ts";
import { parseOptions } from "./lib/cli/options.ts";
import { UsageError } from "./lib/cli/usage_error.ts";
import { runVerify } from "./lib/cli/verify_command.ts";
import denoJson from "./deno.json" with { type: "json" };

/** The package version. */
export const VERSION: string = denoJson.version;

/**
 * Runs the command with `args` (without the program name) and returns the exit code:
 * 0 success, 1 I/O error or verify mismatch, 2 bad usage or input (nothing written),
 * 130/143 after SIGINT/SIGTERM.
 *
 * @param args Command-line arguments.
 * @returns The exit code.
 * @example
 * ```ts ignore
 * import { main } from "@kcopyd/kcopyd/cli";
 * Deno.exitCode = await main(["info", "/dev/loop0"]);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  // From here on SIGINT/SIGTERM do not kill the process: the command stops by itself.
  using interrupts = new Interrupts((signal) => {
    if (Deno.stderr.isTerminal()) {
      const line = `\r\x1b[Kkcopyd: ${signal}: stopping once the I/O in flight has finished\n`;
      Deno.stderr.writeSync(new TextEncoder().encode(line));
    }
  });
  const code = await command(args, interrupts);
  return interrupts.signal && code < 128 ? interrupts.exitCode : code;
}

async function command(args: string[], interrupts: Interrupts): Promise<number> {
  try {
    const opts = parseOptions(args);
    if (opts.version) {
      console.log(`kcopyd ${VERSION}`);
      return 0;
    }
    if (opts.help || opts.command === "help") {
      console.log(HELP);
      return 0;
    }
    switch (opts.command) {
      case "copy":
        return await runCopy(opts, "copy", interrupts);
      case "zero":
        return await runCopy(opts, "zero", interrupts);
      case "verify":
        return await runVerify(opts, interrupts);
      case "info":
        return await runInfo(opts);
      case "":
        throw new UsageError(
          "no command given: use copy, zero, verify or info (see kcopyd --help)",
        );
      default:
        throw new UsageError(
          `unknown command "${opts.command}": use copy, zero, verify or info (see kcopyd --help)`,
        );
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof RangeError || err instanceof TypeError) {
      console.error(`kcopyd: error: ${err.message}`);
      return 2;
    }
    const e = err as Error;
    if (e?.name === "LiburingLoadError" || e?.name === "DeviceError") {
      console.error(`kcopyd: error: ${e.message}`);
      return 2;
    }
    console.error(`kcopyd: internal error: ${e?.stack ?? e}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
