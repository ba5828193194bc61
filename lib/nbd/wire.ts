/**
 * Reading whole messages from a connection: a buffered reader whose small reads need no await
 * when the bytes are already there, and whose large payloads go straight to their target.
 *
 * @module
 */

/** The peer closed the connection while a message was expected. */
export class ConnectionClosed extends Error {
  /** Creates the error. */
  constructor() {
    super("NBD server closed the connection");
    this.name = "ConnectionClosed";
  }
}

/** Payload remainders below this are read through the buffer (with the replies after them). */
const DIRECT_MIN = 64 << 10;

/**
 * A buffered reader. `have`/`take` are synchronous; `fill` awaits the socket.
 *
 * @example
 * ```ts ignore
 * const r = new Reader(conn);
 * if (!r.have(4)) await r.fill(4);
 * const magic = r.view.getUint32(r.take(4));
 * ```
 */
export class Reader {
  /** A view over the whole buffer; `take` says where a message starts in it. */
  readonly view: DataView;
  readonly #conn: Deno.Conn;
  readonly #buf: Uint8Array;
  #start = 0;
  #end = 0;

  /**
   * Wraps a connection.
   *
   * @param conn The connection.
   * @param size Buffer size in bytes (default 256 KiB).
   */
  constructor(conn: Deno.Conn, size = 256 << 10) {
    this.#conn = conn;
    this.#buf = new Uint8Array(size);
    this.view = new DataView(this.#buf.buffer);
  }

  /** Bytes buffered and not yet taken. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * True when `n` bytes are buffered.
   *
   * @param n Bytes.
   * @returns Whether `take(n)` may be called now.
   */
  have(n: number): boolean {
    return this.#end - this.#start >= n;
  }

  /**
   * Consumes `n` buffered bytes (call `have(n)` or `fill(n)` first).
   *
   * @param n Bytes.
   * @returns Their offset in {@linkcode Reader.view}, valid until the next `fill`.
   */
  take(n: number): number {
    const at = this.#start;
    this.#start += n;
    return at;
  }

  /**
   * Reads until at least `n` bytes (at most the buffer size) are buffered.
   *
   * @param n Bytes.
   * @throws {ConnectionClosed} When the peer closes first.
   */
  async fill(n: number): Promise<void> {
    if (this.#end - this.#start >= n) return;
    if (this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end < n) {
      const got = await this.#conn.read(this.#buf.subarray(this.#end));
      if (got === null) throw new ConnectionClosed();
      this.#end += got;
    }
  }

  /**
   * Reads exactly `n` bytes (at most the buffer size) and returns a copy.
   *
   * @param n Bytes.
   * @returns The bytes.
   */
  async bytes(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    await this.readInto(out);
    return out;
  }

  /**
   * Reads exactly `target.length` bytes into `target`: what is buffered first, then large
   * remainders straight from the socket.
   *
   * @param target Where the bytes go.
   * @throws {ConnectionClosed} When the peer closes first.
   */
  async readInto(target: Uint8Array): Promise<void> {
    let got = Math.min(this.#end - this.#start, target.length);
    target.set(this.#buf.subarray(this.#start, this.#start + got));
    this.#start += got;
    while (got < target.length) {
      const left = target.length - got;
      if (left < DIRECT_MIN) {
        await this.fill(left);
        target.set(this.#buf.subarray(this.#start, this.#start + left), got);
        this.#start += left;
        return;
      }
      const n = await this.#conn.read(target.subarray(got));
      if (n === null) throw new ConnectionClosed();
      got += n;
    }
  }

  /**
   * Discards `n` bytes.
   *
   * @param n Bytes.
   */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const step = Math.min(n, this.#buf.length);
      if (!this.have(step)) await this.fill(step);
      this.take(step);
      n -= step;
    }
  }
}

/**
 * Writes every byte of each buffer, in order (for the handshake; requests use a `Sender`).
 *
 * @param conn The connection.
 * @param parts Buffers.
 */
export async function writeAll(conn: Deno.Conn, ...parts: Uint8Array[]): Promise<void> {
  for (const p of parts) {
    let off = 0;
    while (off < p.length) off += await conn.write(p.subarray(off));
  }
}
