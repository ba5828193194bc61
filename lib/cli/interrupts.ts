/**
 * SIGINT and SIGTERM while a command runs: instead of dying, the command notices the signal,
 * stops issuing I/O, lets in-flight I/O finish, says how far it got and exits with 130 / 143.
 *
 * @module
 */

/** The signals a command stops for. */
export type StopSignal = "SIGINT" | "SIGTERM";

/**
 * Records the first SIGINT or SIGTERM received while it is open.
 *
 * @example
 * ```ts
 * import { Interrupts } from "./interrupts.ts";
 * using interrupts = new Interrupts();
 * // ... do work in steps, checking between them:
 * if (interrupts.signal) console.log("stopping, exit code", interrupts.exitCode);
 * ```
 */
export class Interrupts implements Disposable {
  /** The first signal received, if any. */
  signal: StopSignal | undefined;
  readonly #handlers: [StopSignal, () => void][] = [];

  /**
   * Starts listening.
   *
   * @param onFirst Called once, when the first signal arrives (e.g. to say "stopping").
   */
  constructor(onFirst?: (signal: StopSignal) => void) {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      const h = () => {
        if (this.signal !== undefined) return;
        this.signal = sig;
        onFirst?.(sig);
      };
      Deno.addSignalListener(sig, h);
      this.#handlers.push([sig, h]);
    }
  }

  /** True once a signal was received. */
  get stopped(): boolean {
    return this.signal !== undefined;
  }

  /** 130 after SIGINT, 143 after SIGTERM (128 + the signal number), 0 before either. */
  get exitCode(): number {
    return this.signal === "SIGINT" ? 130 : this.signal === "SIGTERM" ? 143 : 0;
  }

  /** Stops listening; the default actions apply again. Safe to call twice. */
  [Symbol.dispose](): void {
    for (const [sig, h] of this.#handlers.splice(0)) Deno.removeSignalListener(sig, h);
  }
}
