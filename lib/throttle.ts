/**
 * Throttling for kcopyd clients: the kernel's busy-time percentage, and a bytes-per-second
 * limit. One Throttle may be shared by several clients.
 *
 * @module
 */

/** Options for {@linkcode Throttle}. */
export interface ThrottleOptions {
  /** Most of the time I/O may be in flight, 1-100 (100 = no limit). */
  percent?: number;
  /** Most bytes per second (source bytes), or undefined for no limit. */
  bytesPerSecond?: number;
}

const WINDOW_MS = 1000;

/**
 * Limits how busy a client keeps its devices.
 *
 * @example
 * ```ts
 * import { Throttle } from "./throttle.ts";
 * const t = new Throttle({ bytesPerSecond: 64 << 20 });
 * await t.admit(1 << 20); // returns at once; the next MiB waits ~16 ms
 * ```
 */
export class Throttle {
  /** The busy-time limit in percent (100 = off). */
  readonly percent: number;
  /** The rate limit, if any. */
  readonly bytesPerSecond: number | undefined;
  #next = 0; // earliest start for the next byte (rate limit)
  #active = 0; // I/Os in flight under this throttle
  #busySince = 0;
  #busy = 0; // busy ms in this window
  #windowStart = performance.now();

  /**
   * Creates a throttle.
   *
   * @param options The limits.
   * @throws {RangeError} For a percent outside 1-100 or a non-positive rate.
   */
  constructor(options: ThrottleOptions = {}) {
    const percent = options.percent ?? 100;
    if (!Number.isFinite(percent) || percent < 1 || percent > 100) {
      throw new RangeError(`Throttle percent must be from 1 to 100: got ${percent}`);
    }
    const rate = options.bytesPerSecond;
    if (rate !== undefined && (!Number.isFinite(rate) || rate <= 0)) {
      throw new RangeError(`Throttle bytesPerSecond must be positive: got ${rate}`);
    }
    this.percent = percent;
    this.bytesPerSecond = rate;
  }

  /** True when this throttle never delays. */
  get unlimited(): boolean {
    return this.percent >= 100 && this.bytesPerSecond === undefined;
  }

  /**
   * Waits until `bytes` more may be issued.
   *
   * @param bytes Bytes about to be read or written.
   */
  async admit(bytes: number): Promise<void> {
    if (this.unlimited) return;
    let delay = 0;
    const now = performance.now();
    if (this.bytesPerSecond !== undefined) {
      const start = Math.max(now, this.#next);
      this.#next = start + (bytes / this.bytesPerSecond) * 1000;
      delay = start - now;
    }
    if (this.percent < 100) {
      if (now - this.#windowStart > WINDOW_MS) {
        this.#windowStart = now;
        this.#busy = 0;
        if (this.#active > 0) this.#busySince = now;
      }
      const busy = this.#busy + (this.#active > 0 ? now - this.#busySince : 0);
      const elapsed = now - this.#windowStart;
      const need = (busy * 100) / this.percent - elapsed;
      delay = Math.max(delay, need);
    }
    if (delay > 0.5) await new Promise((r) => setTimeout(r, delay));
  }

  /** Marks the start of an I/O (for the busy-time limit). */
  begin(): void {
    if (this.#active++ === 0) this.#busySince = performance.now();
  }

  /** Marks the end of an I/O. */
  end(): void {
    if (--this.#active === 0) {
      const now = performance.now();
      this.#busy += now - Math.max(this.#busySince, this.#windowStart);
    }
  }
}
