/**
 * Outgoing bytes for one connection. Request headers and small payloads are copied into a
 * staging buffer, so that everything queued while the previous write was on its way goes out
 * in one `write`; large payloads are written straight from their memory after their header.
 *
 * @module
 */

/** Payloads up to this size are copied next to their header (one write instead of two). */
const COPY_MAX = 64 << 10;
const STAGE_SIZE = 512 << 10;

/**
 * Queues bytes and writes them in order, coalescing what was queued in the meantime.
 *
 * @example
 * ```ts ignore
 * const s = new Sender(conn, (err) => console.error(err));
 * const at = s.reserve(28);
 * s.view.setUint32(at, 0x25609513);
 * s.append(payload);
 * ```
 */
export class Sender {
  readonly #conn: Deno.Conn;
  readonly #onError: (err: unknown) => void;
  #stage = new Uint8Array(STAGE_SIZE);
  #spare = new Uint8Array(STAGE_SIZE);
  #view = new DataView(this.#stage.buffer);
  #spareView = new DataView(this.#spare.buffer);
  #used = 0;
  #sealed = 0;
  #segments: Uint8Array[] = [];
  #running: Promise<void> | undefined;
  #failed = false;

  /**
   * Wraps a connection.
   *
   * @param conn The connection.
   * @param onError Called once when a write fails; later bytes are dropped.
   */
  constructor(conn: Deno.Conn, onError: (err: unknown) => void) {
    this.#conn = conn;
    this.#onError = onError;
  }

  /** The staging buffer's view; valid for the offset `reserve` returned until the next call. */
  get view(): DataView {
    return this.#view;
  }

  /**
   * Makes room for `n` bytes (a request header) and queues them.
   *
   * @param n Bytes (at most 512 KiB).
   * @returns Their offset in {@linkcode Sender.view}; fill them before yielding.
   */
  reserve(n: number): number {
    if (this.#used + n > this.#stage.length) this.#fresh();
    const at = this.#used;
    this.#used += n;
    this.#start();
    return at;
  }

  /**
   * Queues a payload after what was reserved: copied when small, else written from `data`
   * itself (which must stay unchanged until the request is answered).
   *
   * @param data The bytes.
   */
  append(data: Uint8Array): void {
    const n = data.length;
    if (n === 0) return;
    if (n <= COPY_MAX) {
      if (this.#used + n > this.#stage.length) this.#fresh();
      this.#stage.set(data, this.#used);
      this.#used += n;
    } else {
      this.#seal();
      this.#segments.push(data);
    }
    this.#start();
  }

  /** Resolves when everything queued so far has been written (or writing failed). */
  async drain(): Promise<void> {
    while (this.#running) await this.#running;
  }

  #seal(): void {
    if (this.#used > this.#sealed) {
      this.#segments.push(this.#stage.subarray(this.#sealed, this.#used));
      this.#sealed = this.#used;
    }
  }

  /** The staging buffer is full: seal it and stage into a new one (rare). */
  #fresh(): void {
    this.#seal();
    this.#stage = new Uint8Array(STAGE_SIZE);
    this.#view = new DataView(this.#stage.buffer);
    this.#used = this.#sealed = 0;
  }

  #start(): void {
    this.#running ??= this.#run();
  }

  async #run(): Promise<void> {
    // Let the rest of this turn queue its requests first.
    await Promise.resolve();
    try {
      for (;;) {
        this.#seal();
        if (this.#segments.length === 0) break;
        const batch = this.#segments;
        this.#segments = [];
        // What is written now lives in the old stage; new requests go to the spare.
        const stage = this.#spare;
        const view = this.#spareView;
        this.#spare = this.#stage;
        this.#spareView = this.#view;
        this.#stage = stage;
        this.#view = view;
        this.#used = this.#sealed = 0;
        if (this.#failed) continue;
        for (const part of batch) {
          let off = 0;
          while (off < part.length) off += await this.#conn.write(part.subarray(off));
        }
      }
    } catch (err) {
      this.#failed = true;
      this.#segments = [];
      this.#onError(err);
    } finally {
      this.#running = undefined;
    }
  }
}
