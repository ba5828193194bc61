// Running the tools of bench/compare.ts: plain, under GNU time (wall seconds and peak RSS), or
// self-timed (the tool prints its own elapsed seconds on its last line of output).

const decoder = new TextDecoder();

/** Runs a command; throws with its output when it fails, unless `quiet`. */
export async function sh(
  cmd: string,
  args: string[],
  opts: { quiet?: boolean } = {},
): Promise<{ ok: boolean; stdout: string; text: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const stdout = decoder.decode(out.stdout);
  const text = stdout + decoder.decode(out.stderr);
  if (!out.success && !opts.quiet) throw new Error(`${cmd} ${args.join(" ")}: ${text.trim()}`);
  return { ok: out.success, stdout, text };
}

/** True when `cmd` is on the PATH. */
export async function has(cmd: string): Promise<boolean> {
  return (await sh("sh", ["-c", `command -v ${cmd}`], { quiet: true })).ok;
}

/** What one timed run took. */
export interface Timing {
  seconds: number;
  rssKiB: number;
}

/** Runs a command under GNU time: wall seconds (with its start-up) and peak RSS. */
export async function timed(cmd: string, args: string[]): Promise<Timing & { text: string }> {
  const t0 = performance.now();
  const r = await sh("/usr/bin/time", ["-f", "RSS_KIB=%M", cmd, ...args]);
  const seconds = (performance.now() - t0) / 1000;
  const m = r.text.match(/RSS_KIB=(\d+)/);
  return { seconds, rssKiB: m ? Number(m[1]) : 0, text: r.text };
}

/** Runs a command that prints its own elapsed seconds last on stdout, under GNU time for RSS. */
export async function selfTimed(cmd: string, args: string[]): Promise<Timing> {
  const t = await timed(cmd, args);
  const lines = t.text.split("\n").map((l) => l.trim()).filter((l) => /^\d+(\.\d+)?$/.test(l));
  if (lines.length === 0) throw new Error(`${cmd} printed no elapsed time: ${t.text.trim()}`);
  return { seconds: Number(lines[lines.length - 1]), rssKiB: t.rssKiB };
}
