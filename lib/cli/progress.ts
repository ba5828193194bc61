/**
 * The progress line on stderr (only when stderr is a terminal): bytes done / total, rate,
 * ETA and errors per destination.
 *
 * @module
 */
import { formatBytes } from "./units.ts";

/** What the progress line shows. */
export interface ProgressState {
  /** Source bytes done. */
  done: number;
  /** Source bytes in all. */
  total: number;
  /** Errors so far per destination index (read errors under -1). */
  errors: Map<number, number>;
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/**
 * Renders one progress line.
 *
 * @param label The verb, e.g. `"copy"`.
 * @param state Numbers to show.
 * @param seconds Elapsed time.
 * @param width Terminal columns.
 * @returns The line (without a newline).
 * @example
 * ```ts
 * import { renderProgress } from "./progress.ts";
 * const line = renderProgress("copy", { done: 256 << 20, total: 1 << 30, errors: new Map() }, 2);
 * console.log(line); // copy [#####---------------]  25.0% 256 MiB / 1.00 GiB  128 MiB/s  ETA 00:06
 * ```
 */
export function renderProgress(
  label: string,
  state: ProgressState,
  seconds: number,
  width = 80,
): string {
  const frac = state.total > 0 ? Math.min(1, state.done / state.total) : 1;
  const rate = seconds > 0 ? state.done / seconds : 0;
  const eta = rate > 0 ? (state.total - state.done) / rate : Infinity;
  const errs = [...state.errors].filter(([, n]) => n > 0)
    .map(([d, n]) => d < 0 ? `read errors ${n}` : `dest ${d}: ${n} errors`);
  const tail = ` ${(frac * 100).toFixed(1).padStart(5)}% ${formatBytes(state.done)} / ` +
    `${formatBytes(state.total)}  ${formatBytes(rate)}/s  ETA ${clock(eta)}` +
    (errs.length ? `  ${errs.join(", ")}` : "");
  const barWidth = Math.max(5, Math.min(40, width - tail.length - label.length - 5));
  const full = Math.round(frac * barWidth);
  return `${label} [${"#".repeat(full)}${"-".repeat(barWidth - full)}]${tail}`;
}

/**
 * Redraws the progress line on stderr every 200 ms while running, if stderr is a terminal.
 *
 * @example
 * ```ts
 * import { Progress } from "./progress.ts";
 * let done = 0;
 * const p = new Progress("copy", () => ({ done, total: 100, errors: new Map() }), false);
 * done = 100;
 * p.stop(); // draws the final line and a newline (when enabled)
 * ```
 */
export class Progress {
  readonly #label: string;
  readonly #read: () => ProgressState;
  readonly #start = performance.now();
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #enabled: boolean;

  /**
   * @param label The verb shown first.
   * @param read Returns the current numbers.
   * @param enabled Draw at all (false for --quiet, --json or a non-terminal stderr).
   */
  constructor(label: string, read: () => ProgressState, enabled: boolean) {
    this.#label = label;
    this.#read = read;
    this.#enabled = enabled;
    if (enabled) this.#timer = setInterval(() => this.#draw(), 200);
  }

  #draw(): void {
    let width = 80;
    try {
      width = Deno.consoleSize().columns || 80; // a pty without a size reports 0
    } catch {
      // not a console
    }
    const line = renderProgress(
      this.#label,
      this.#read(),
      (performance.now() - this.#start) / 1000,
      width,
    );
    Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${line.slice(0, width - 1)}`));
  }

  /** Draws the final state and ends the line. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#enabled) {
      this.#draw();
      Deno.stderr.writeSync(new TextEncoder().encode("\n"));
    }
  }
}
