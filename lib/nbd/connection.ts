/**
 * One NBD connection in the transmission phase: many requests in flight, replies (simple or
 * structured, in any order) matched by cookie. Every request resolves with bytes done (or 0)
 * or a negative errno; none rejects.
 *
 * @module
 */
import { Chunk, Cmd, Magic, nbdErrno } from "./protocol.ts";
import type { ExportInfo } from "./handshake.ts";
import { type Reader, writeAll } from "./wire.ts";

const ECONNRESET = 104;
const ENOTCONN = 107;
const ETIMEDOUT = 110;

interface Pending {
  cmd: number;
  offset: number;
  length: number;
  target?: Uint8Array;
  error: number;
  started: number;
  resolve: (res: number) => void;
  extents?: { length: number; flags: number }[];
}

/** A handshaken connection to one export. */
export class NbdConnection {
  /** What the server said about the export. */
  readonly info: ExportInfo;
  readonly #conn: Deno.Conn;
  readonly #reader: Reader;
  readonly #pending = new Map<number, Pending>();
  readonly #ioTimeoutMs: number;
  #cookie = 0;
  #writes: Promise<void> = Promise.resolve();
  #dead = 0; // errno once the connection is unusable
  #closing = false;
  #loop: Promise<void>;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #idle: (() => void)[] = [];

  /**
   * Takes over a connection whose handshake is done and starts reading replies.
   *
   * @param conn The socket.
   * @param reader Its reader.
   * @param info The handshake result.
   * @param ioTimeoutMs Fail requests unanswered for this long (0: never).
   */
  constructor(conn: Deno.Conn, reader: Reader, info: ExportInfo, ioTimeoutMs: number) {
    this.#conn = conn;
    this.#reader = reader;
    this.info = info;
    this.#ioTimeoutMs = ioTimeoutMs;
    this.#loop = this.#readLoop();
  }

  /** Requests waiting for replies. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** True once the connection failed or was closed. */
  get dead(): boolean {
    return this.#dead !== 0;
  }

  /**
   * Sends one request.
   *
   * @param cmd An NBD command.
   * @param flags Command flags.
   * @param offset Byte offset.
   * @param length Byte length.
   * @param payload Data for WRITE.
   * @param target Where READ data goes (`length` bytes).
   * @returns Bytes done for READ/WRITE, 0 for others, or a negative errno.
   */
  request(
    cmd: number,
    flags: number,
    offset: number,
    length: number,
    payload?: Uint8Array,
    target?: Uint8Array,
  ): Promise<number> {
    if (this.#dead) return Promise.resolve(-this.#dead);
    const cookie = ++this.#cookie;
    const h = new DataView(new ArrayBuffer(28));
    h.setUint32(0, Magic.REQUEST);
    h.setUint16(4, flags);
    h.setUint16(6, cmd);
    h.setUint32(8, 0);
    h.setUint32(12, cookie);
    h.setUint32(16, Math.floor(offset / 4294967296));
    h.setUint32(20, offset >>> 0);
    h.setUint32(24, length);
    return new Promise((resolve) => {
      this.#pending.set(cookie, {
        cmd,
        offset,
        length,
        target,
        error: 0,
        started: performance.now(),
        resolve,
      });
      this.#armWatchdog();
      const header = new Uint8Array(h.buffer);
      this.#writes = this.#writes.then(() =>
        payload ? writeAll(this.#conn, header, payload) : writeAll(this.#conn, header)
      ).catch(() => this.#fail(ECONNRESET));
    });
  }

  /**
   * `NBD_CMD_BLOCK_STATUS` for `base:allocation`: extents with flags (1 = hole, 2 = zero).
   *
   * @param offset Byte offset.
   * @param length Byte length.
   * @returns Extents, or a negative errno.
   */
  blockStatus(
    offset: number,
    length: number,
  ): Promise<{ length: number; flags: number }[] | number> {
    if (this.info.allocationContext === undefined) return Promise.resolve(-95);
    const cookie = this.#cookie + 1;
    const p = this.request(Cmd.BLOCK_STATUS, 0, offset, length);
    const entry = this.#pending.get(cookie);
    if (entry) entry.extents = [];
    return p.then((res) => (res < 0 ? res : entry?.extents ?? []));
  }

  #armWatchdog(): void {
    if (!this.#ioTimeoutMs || this.#watchdog !== undefined) return;
    this.#watchdog = setInterval(() => {
      if (this.#pending.size === 0) {
        clearInterval(this.#watchdog);
        this.#watchdog = undefined;
        return;
      }
      const now = performance.now();
      for (const p of this.#pending.values()) {
        if (now - p.started > this.#ioTimeoutMs) {
          this.#fail(ETIMEDOUT);
          try {
            this.#conn.close();
          } catch { /* closed */ }
          return;
        }
      }
    }, Math.min(1000, this.#ioTimeoutMs));
  }

  #fail(errno: number): void {
    if (!this.#dead) this.#dead = errno;
    for (const p of this.#pending.values()) p.resolve(-errno);
    this.#pending.clear();
    this.#settleIdle();
  }

  #settleIdle(): void {
    if (this.#pending.size > 0) return;
    if (this.#watchdog !== undefined) {
      clearInterval(this.#watchdog);
      this.#watchdog = undefined;
    }
    for (const w of this.#idle.splice(0)) w();
  }

  /** Resolves when no request is waiting for a reply. */
  idle(): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  #finish(cookie: number, p: Pending): void {
    this.#pending.delete(cookie);
    p.resolve(p.error ? -p.error : (p.cmd === Cmd.READ || p.cmd === Cmd.WRITE ? p.length : 0));
    this.#settleIdle();
  }

  async #readLoop(): Promise<void> {
    const r = this.#reader;
    try {
      for (;;) {
        const m = await r.read(4);
        const magic = m.getUint32(0);
        if (magic === Magic.SIMPLE_REPLY) {
          const h = await r.read(12);
          const error = h.getUint32(0);
          const cookie = h.getUint32(8);
          const p = this.#pending.get(cookie);
          if (!p) throw new Error(`reply for unknown cookie ${cookie}`);
          if (error) p.error = nbdErrno(error);
          else if (p.cmd === Cmd.READ && p.target) await r.readInto(p.target);
          this.#finish(cookie, p);
        } else if (magic === Magic.STRUCTURED_REPLY) {
          const h = await r.read(16);
          const flags = h.getUint16(0);
          const type = h.getUint16(2);
          const cookie = h.getUint32(8);
          const length = h.getUint32(12);
          const p = this.#pending.get(cookie);
          if (!p) throw new Error(`structured reply for unknown cookie ${cookie}`);
          await this.#chunk(p, type, length);
          if (flags & Chunk.FLAG_DONE) this.#finish(cookie, p);
        } else {
          throw new Error(`bad reply magic 0x${magic.toString(16)}`);
        }
      }
    } catch {
      // The server went away (or sent garbage): fail what is in flight.
      this.#fail(this.#closing ? ENOTCONN : ECONNRESET);
    }
  }

  async #chunk(p: Pending, type: number, length: number): Promise<void> {
    const r = this.#reader;
    if (type === Chunk.OFFSET_DATA) {
      const off = (await r.read(8)).getBigUint64(0);
      const at = Number(off) - p.offset;
      const n = length - 8;
      if (!p.target || at < 0 || at + n > p.length) throw new Error("data chunk outside the read");
      await r.readInto(p.target.subarray(at, at + n));
    } else if (type === Chunk.OFFSET_HOLE) {
      const h = await r.read(12);
      const at = Number(h.getBigUint64(0)) - p.offset;
      const n = h.getUint32(8);
      if (!p.target || at < 0 || at + n > p.length) throw new Error("hole chunk outside the read");
      p.target.fill(0, at, at + n);
    } else if (type === Chunk.ERROR || type === Chunk.ERROR_OFFSET) {
      const h = await r.read(6);
      p.error = nbdErrno(h.getUint32(0));
      await r.skip(length - 6);
    } else if (type === Chunk.BLOCK_STATUS && p.extents) {
      await r.read(4); // context id
      for (let left = length - 4; left >= 8; left -= 8) {
        const d = await r.read(8);
        p.extents.push({ length: d.getUint32(0), flags: d.getUint32(4) });
      }
    } else {
      await r.skip(length);
    }
  }

  /**
   * Waits for every reply, sends `NBD_CMD_DISC`, and closes the socket. Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.#closing) return await this.#loop;
    this.#closing = true;
    await this.idle();
    if (!this.#dead) {
      // NBD_CMD_DISC has no reply: send it and close.
      const h = new DataView(new ArrayBuffer(28));
      h.setUint32(0, Magic.REQUEST);
      h.setUint16(6, Cmd.DISC);
      h.setUint32(12, ++this.#cookie);
      this.#writes = this.#writes.then(() => writeAll(this.#conn, new Uint8Array(h.buffer)))
        .catch(() => {});
      await this.#writes;
    }
    this.#dead ||= ENOTCONN;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    await this.#loop;
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
  }
}
