/**
 * Reading and writing whole messages on a connection.
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

/** A buffered reader: small reads come from a buffer, large payloads go straight to their target. */
export class Reader {
  readonly #conn: Deno.Conn;
  readonly #buf = new Uint8Array(256 << 10);
  #start = 0;
  #end = 0;

  /**
   * Wraps a connection.
   *
   * @param conn The connection.
   */
  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  async #fill(n: number): Promise<void> {
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
   * Reads exactly `n` (≤ 256 KiB) bytes; the view is valid until the next read.
   *
   * @param n Bytes.
   * @returns A DataView over them.
   */
  async read(n: number): Promise<DataView> {
    await this.#fill(n);
    const v = new DataView(this.#buf.buffer, this.#start, n);
    this.#start += n;
    return v;
  }

  /**
   * Reads exactly `target.length` bytes into `target`.
   *
   * @param target Where the bytes go.
   */
  async readInto(target: Uint8Array): Promise<void> {
    const have = Math.min(this.#end - this.#start, target.length);
    target.set(this.#buf.subarray(this.#start, this.#start + have));
    this.#start += have;
    let got = have;
    while (got < target.length) {
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
      await this.read(step);
      n -= step;
    }
  }
}

/**
 * Writes every byte of each buffer, in order.
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
