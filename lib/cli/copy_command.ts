/**
 * `kcopyd copy` and `kcopyd zero`. The library has no way to cancel a running job, so the
 * command cuts its work into segments (one kcopyd job each, submitted in order, a few in
 * flight): after Ctrl-C it submits no new segment, waits for those in flight, and knows
 * exactly which sectors are done.
 *
 * @module
 */
import { KcopydClient } from "../client.ts";
import { Throttle } from "../throttle.ts";
import { type CopyErrorEntry, KcopydFlags } from "../types.ts";
import { compareRegions } from "./compare.ts";
import { engineError } from "./engine_error.ts";
import type { Interrupts } from "./interrupts.ts";
import type { CliOptions } from "./options.ts";
import { Progress, type ProgressState } from "./progress.ts";
import { isUri } from "./region_arg.ts";
import { Destinations, openSource, type Target } from "./targets.ts";
import { formatBytes } from "./units.ts";
import { UsageError } from "./usage_error.ts";

/** The JSON summary printed with `--json`. */
export interface CopySummary {
  /** Source bytes copied (copy), or bytes zeroed over all destinations (zero). */
  bytes: number;
  seconds: number;
  bytesPerSecond: number;
  readErr: boolean;
  writeErr: number;
  /** Absolute 512-byte sectors on the device named by `dest` (absent: the source). */
  errors: { dest?: number; sector: number; count: number; code: string }[];
  /** With `--verify`: every destination equals the source (false if not checked to the end). */
  verified?: boolean;
  /** After SIGINT/SIGTERM: the signal. */
  interrupted?: string;
  /** After SIGINT/SIGTERM: sectors from the start of every region known to be done. */
  knownGoodSectors?: number;
}

/** How the work is cut: bytes per segment and segments in flight. */
function segmentPlan(opts: CliOptions): { bytes: number; inFlight: number } {
  if (opts.writeSeq) return { bytes: 16 << 20, inFlight: 1 };
  if (opts.rate !== undefined) {
    // Keep what is left to drain after Ctrl-C to about half a second at the given rate.
    const quarter = Math.floor(opts.rate / 4 / 65536) * 65536;
    return { bytes: Math.max(65536, Math.min(16 << 20, quarter)), inFlight: 2 };
  }
  // As many 16 MiB jobs as the pool can feed (8 sub-jobs each), 2 to 8 (fastest measured).
  const perJob = 8 * (opts.subJobSize ?? 1 << 20);
  return { bytes: 16 << 20, inFlight: Math.max(2, Math.min(8, Math.floor(opts.memory / perJob))) };
}

async function createClient(opts: CliOptions, nDests: number, remote: boolean) {
  const throttle = opts.rate !== undefined || opts.throttle !== undefined
    ? new Throttle({ percent: opts.throttle, bytesPerSecond: opts.rate })
    : undefined;
  try {
    return await KcopydClient.create({
      pages: Math.ceil(opts.memory / 4096),
      subJobSize: opts.subJobSize,
      maxDestinations: Math.max(8, nDests),
      throttle,
      // Inline waits block the event loop for up to 2 ms, which starves NBD sockets: remote
      // copies wait on a worker thread (measured: 1.84 vs 1.66 GiB/s down).
      waitMode: remote ? "worker" : "inline",
    });
  } catch (err) {
    throw engineError(err);
  }
}

function describe(e: CopyErrorEntry, dests: Target[], source?: Target): string {
  const where = `sectors ${e.sector}+${e.count}`;
  return e.dest === undefined
    ? `read error ${e.code} on "${source?.path}" at ${where}`
    : `write error ${e.code} on dest ${e.dest} "${dests[e.dest].path}" at ${where}`;
}

/** Sectors of [from, from+len) that `errors` (in sectors from the region's start) cover, once each. */
function failedSectors(errors: CopyErrorEntry[], from: bigint, len: bigint): bigint {
  const ranges = errors.map((e) => [e.sector - from, e.sector - from + e.count])
    .map(([s, e]) => [s < 0n ? 0n : s, e > len ? len : e])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
  let total = 0n;
  let end = 0n;
  for (const [s, e] of ranges) {
    const start = s > end ? s : end;
    if (e > start) total += e - start;
    if (e > end) end = e;
  }
  return total;
}

/**
 * Runs `copy` (with a source) or `zero` (without): checks everything, starts the engine,
 * creates missing destination files, then copies.
 *
 * @param opts Parsed options and positionals.
 * @param mode `"copy"` or `"zero"`.
 * @param interrupts Signals received so far and from now on.
 * @returns The exit code.
 * @throws {UsageError} For anything found before the first write (nothing is written).
 * @example
 * ```ts ignore
 * using interrupts = new Interrupts();
 * const code = await runCopy(parseOptions(["copy", "a.img", "b.img"]), "copy", interrupts);
 * ```
 */
export async function runCopy(
  opts: CliOptions,
  mode: "copy" | "zero",
  interrupts: Interrupts,
): Promise<number> {
  const pos = opts.positionals;
  if (mode === "copy" && pos.length < 2) {
    throw new UsageError("copy needs a source and at least one destination");
  }
  if (mode === "zero" && pos.length < 1) {
    throw new UsageError("zero needs at least one destination");
  }
  if (mode === "zero" && opts.verify) {
    throw new UsageError("--verify compares a copy with its source: it does not apply to zero");
  }
  const source = mode === "copy" ? await openSource(pos[0]) : undefined;
  let dests: Destinations | undefined;
  let written = false;
  try {
    dests = await Destinations.check(mode === "copy" ? pos.slice(1) : pos, {
      count: source?.count,
      source,
      force: opts.force,
    });
    const remote = pos.some(isUri);
    // The engine starts before any file is created: a missing liburing or a blocked io_uring
    // leaves nothing behind.
    const kc = await createClient(opts, pos.length, remote);
    try {
      await dests.create();
      if (interrupts.signal) {
        if (opts.json) {
          const summary: CopySummary = {
            bytes: 0,
            seconds: 0,
            bytesPerSecond: 0,
            readErr: false,
            writeErr: 0,
            errors: [],
            ...(opts.verify ? { verified: false } : {}),
            interrupted: interrupts.signal,
            knownGoodSectors: 0,
          };
          console.log(JSON.stringify(summary));
        }
        console.error(`kcopyd: interrupted by ${interrupts.signal} before anything was written`);
        return interrupts.exitCode;
      }
      written = true;
      try {
        return await run(kc, opts, mode, source, dests.targets, interrupts);
      } catch (err) {
        // Not a user mistake (those are caught before this point) and not "nothing written".
        const e = new Error(`failed after writing started: ${(err as Error)?.message}`, {
          cause: err,
        });
        e.stack = (err as Error)?.stack;
        throw e;
      }
    } finally {
      await kc.destroy();
    }
  } finally {
    await source?.device.close();
    await dests?.close({ removeCreated: !written });
  }
}

async function run(
  kc: KcopydClient,
  opts: CliOptions,
  mode: "copy" | "zero",
  source: Target | undefined,
  dests: Target[],
  interrupts: Interrupts,
): Promise<number> {
  const flags = (opts.ignoreErrors ? KcopydFlags.IGNORE_ERROR : 0) |
    (opts.writeSeq ? KcopydFlags.WRITE_SEQ : 0);
  const plan = segmentPlan(opts);
  // Segment i covers sectors [i*S, (i+1)*S) of every region (of the longest one for zero).
  const sectors = source ? source.count : dests.reduce((m, d) => d.count > m ? d.count : m, 0n);
  const total = source ? source.count * 512n : dests.reduce((m, d) => m + d.count * 512n, 0n);
  const segSectors = BigInt(plan.bytes / 512);
  const nSeg = Number((sectors + segSectors - 1n) / segSectors);
  const finished = new Array<boolean>(nSeg).fill(false);
  const errors: CopyErrorEntry[] = [];
  let readErr = false;
  let writeErr = 0;
  let doneBytes = 0n;
  let next = 0;
  const state = (): ProgressState => {
    const per = new Map<number, number>();
    for (const e of errors) per.set(e.dest ?? -1, (per.get(e.dest ?? -1) ?? 0) + 1);
    return { done: Number(doneBytes) + kc.activeBytesDone, total: Number(total), errors: per };
  };
  const terminal = !opts.quiet && !opts.json && Deno.stderr.isTerminal();
  const progress = new Progress(mode, state, terminal);
  const t0 = performance.now();
  let failure: { err: unknown } | undefined; // a bug, not an I/O error: those never throw
  const stop = () =>
    failure !== undefined || interrupts.stopped || (errors.length > 0 && !opts.ignoreErrors);

  const segment = async (i: number) => {
    const at = BigInt(i) * segSectors;
    const len = sectors - at < segSectors ? sectors - at : segSectors;
    if (source) {
      const r = await kc.copy(
        { device: source.device, sector: source.sector + at, count: len },
        dests.map((d) => ({ device: d.device, sector: d.sector + at })),
        { flags, flush: opts.flush },
      );
      readErr ||= r.readErr;
      writeErr |= r.writeErr;
      errors.push(...r.errors);
      // A sector counts as copied when it reached every destination.
      const failed = failedSectors(
        r.errors.map((e) => ({
          ...e,
          sector: e.sector - (e.dest === undefined ? source.sector : dests[e.dest].sector),
        })),
        at,
        len,
      );
      doneBytes += (len - failed) * 512n;
      return r.errors.length === 0;
    }
    // zero: each destination has its own length; zero() numbers the live ones from 0.
    const live = dests.map((d, k) => ({ d, k })).filter(({ d }) => d.count > at);
    const parts = live.map(({ d }) => d.count - at < len ? d.count - at : len);
    const r = await kc.zero(
      live.map(({ d }, j) => ({ device: d.device, sector: d.sector + at, count: parts[j] })),
      { flags, flush: opts.flush },
    );
    const mine = r.errors.map((e) => ({ ...e, dest: live[e.dest ?? 0].k }));
    for (const e of mine) writeErr |= 1 << e.dest;
    errors.push(...mine);
    live.forEach(({ d, k }, j) => {
      const own = mine.filter((e) => e.dest === k).map((e) => ({
        ...e,
        sector: e.sector - d.sector,
      }));
      doneBytes += (parts[j] - failedSectors(own, at, parts[j])) * 512n;
    });
    return r.errors.length === 0;
  };
  const worker = async () => {
    while (next < nSeg && !stop()) {
      const i = next++;
      try {
        finished[i] = await segment(i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: plan.inFlight }, worker));
  progress.stop();
  if (failure) throw failure.err;
  const seconds = (performance.now() - t0) / 1000;
  let prefix = 0;
  while (prefix < nSeg && finished[prefix]) prefix++;
  const goodSectors = BigInt(prefix) * segSectors < sectors ? BigInt(prefix) * segSectors : sectors;

  let verified: boolean | undefined;
  const mismatches: string[] = [];
  if (opts.verify && source) {
    verified = false;
    if (!interrupts.stopped) {
      let vDone = 0;
      const verifyProgress = new Progress("verify", () => ({
        done: vDone,
        total: Number(source.count * 512n),
        errors: new Map(),
      }), terminal);
      let cmp;
      try {
        cmp = await compareRegions(source, dests, source.count, {
          onProgress: (b) => vDone = b,
          stopped: () => interrupts.stopped,
        });
      } catch (err) {
        throw engineError(err);
      } finally {
        verifyProgress.stop();
      }
      verified = !interrupts.stopped && cmp.results.every((r) => r.diffSectors === 0n);
      cmp.results.forEach((r, d) => {
        if (r.diffSectors > 0n) {
          mismatches.push(
            `kcopyd: verify: dest ${d} "${dests[d].path}" differs: first differing sector ` +
              `${r.firstDiff}, ${r.diffSectors} sectors differ${r.error ? ` (${r.error})` : ""}`,
          );
        }
      });
    }
  }
  errors.sort((a, b) => (a.dest ?? -1) - (b.dest ?? -1) || (a.sector < b.sector ? -1 : 1));
  const bytes = Number(doneBytes);
  const summary: CopySummary = {
    bytes,
    seconds: Number(seconds.toFixed(6)),
    bytesPerSecond: seconds > 0 ? Math.round(bytes / seconds) : 0,
    readErr,
    writeErr,
    errors: errors.map((e) => ({
      ...(e.dest !== undefined ? { dest: e.dest } : {}),
      sector: Number(e.sector),
      count: Number(e.count),
      code: e.code,
    })),
  };
  if (verified !== undefined) summary.verified = verified;
  if (interrupts.signal) {
    summary.interrupted = interrupts.signal;
    summary.knownGoodSectors = Number(goodSectors);
  }

  if (opts.json) console.log(JSON.stringify(summary));
  if (!opts.json) {
    for (const e of errors.slice(0, 20)) console.error(`kcopyd: ${describe(e, dests, source)}`);
    if (errors.length > 20) console.error(`kcopyd: ... and ${errors.length - 20} more errors`);
    for (const m of mismatches) console.error(m);
  }
  if (!opts.json && !opts.quiet) {
    const verb = mode === "copy" ? `copied to ${dests.length} destination(s)` : "zeroed";
    console.error(
      `kcopyd: ${formatBytes(bytes)} ${verb} in ${seconds.toFixed(2)} s ` +
        `(${formatBytes(summary.bytesPerSecond)}/s)` +
        (verified === undefined ? "" : verified ? ", verified" : ", NOT verified"),
    );
  }
  if (interrupts.signal) {
    const regions = dests.map((d) => {
      const n = goodSectors < d.count ? goodSectors : d.count;
      return `"${d.path}" sectors ${d.sector}+${n}`;
    }).join(", ");
    console.error(
      `kcopyd: interrupted by ${interrupts.signal}; in-flight I/O finished. Known good: ` +
        `${goodSectors} of ${sectors} sectors from the start of each region` +
        (source ? ` (source "${source.path}" sectors ${source.sector}+${goodSectors} → ` : " (") +
        `${regions}); the rest may be incomplete`,
    );
    return interrupts.exitCode;
  }
  if (errors.length > 0 || verified === false) return 1;
  return 0;
}
