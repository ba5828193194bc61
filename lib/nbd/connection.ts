/**
 * One NBD connection in the transmission phase: many requests in flight, replies (simple or
 * structured, in any order) matched by cookie. Every request completes with bytes done (or 0)
 * or a negative errno; none throws or rejects.
 *
 * @module
 */
import type { ExportInfo } from "./handshake.ts";
import { Chunk, Cmd, Magic, nbdErrno } from "./protocol.ts";
import { Sender } from "./sender.ts";
import type { Reader } from "./wire.ts";

const EIO = 5;
const ENOTSUP = 95;
const ENOTCONN = 107;
const ETIMEDOUT = 110;

/** Called once with bytes done (READ/WRITE), 0 (other commands) or a negative errno. */
export type Done = (res: number) => void;

/** One `base:allocation` extent: `flags` bit 0 = hole, bit 1 = reads as zeros. */
export interface NbdExtent {
  /** Bytes. */
  length: number;
  /** `NBD_STATE_HOLE` (1) and `NBD_STATE_ZERO` (2). */
  flags: number;
}

interface Pending {
  cmd: number;
  offset: number;
  length: number;
  /** READ: where the data goes. */
  target: Uint8Array | undefined;
  error: number;
  tick: number;
  /** Write-type commands: their order on this connection, for flush barriers. */
  seq: number;
  extents: NbdExtent[] | undefined;
  done: Done;
}

interface Barrier {
  seq: number;
  resolve: () => void;
}

/** A protocol violation: the stream cannot be trusted any more. */
class ProtocolError extends Error {}

function isWriteType(cmd: number): boolean {
  return cmd === Cmd.WRITE || cmd === Cmd.WRITE_ZEROES || cmd === Cmd.TRIM;
}

/**
 * A handshaken connection to one export.
 *
 * @example
 * ```ts ignore
 * const c = new NbdConnection(conn, reader, info, { ioTimeoutMs: 30_000 });
 * c.send(Cmd.READ, 0, 0, 4096, target, (res) => console.log(res)); // 4096
 * await c.close();
 * ```
 */
export class NbdConnection {
  /** What the server said about the export. */
  readonly info: ExportInfo;
  readonly #conn: Deno.Conn;
  readonly #reader: Reader;
  readonly #sender: Sender;
  readonly #pending = new Map<number, Pending>();
  readonly #ioTimeoutMs: number;
  readonly #tickMs: number;
  #cookie = 0;
  #dead = 0; // errno once the connection is unusable
  #closed: Promise<void> | undefined;
  #loop: Promise<void>;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #tick = 0;
  #idle: (() => void)[] = [];
  #writeSeq = 0;
  readonly #writes = new Set<Pending>();
  #barriers: Barrier[] = [];

  /**
   * Takes over a connection whose handshake is done and starts reading replies.
   *
   * @param conn The socket.
   * @param reader Its reader (it may hold bytes already).
   * @param info The handshake result.
   * @param options `ioTimeoutMs`: fail the connection when a request is unanswered this long
   *   (0: never).
   */
  constructor(
    conn: Deno.Conn,
    reader: Reader,
    info: ExportInfo,
    options: { ioTimeoutMs?: number } = {},
  ) {
    this.#conn = conn;
    this.#reader = reader;
    this.info = info;
    this.#ioTimeoutMs = options.ioTimeoutMs ?? 0;
    this.#tickMs = Math.max(10, Math.min(1000, Math.floor(this.#ioTimeoutMs / 4)));
    this.#sender = new Sender(conn, () => {
      this.#fail(ENOTCONN);
      this.#closeSocket(); // and stop the reader: nothing more can be answered
    });
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
   * Sends one request; `done` runs once, when its reply is in (never synchronously).
   *
   * @param cmd An NBD command.
   * @param flags Command flags.
   * @param offset Byte offset.
   * @param length Byte length.
   * @param data The payload (WRITE) or where the data goes (READ), `length` bytes.
   * @param done Gets bytes done for READ/WRITE, 0 for others, or a negative errno.
   */
  send(
    cmd: number,
    flags: number,
    offset: number,
    length: number,
    data: Uint8Array | undefined,
    done: Done,
  ): void {
    this.#send(cmd, flags, offset, length, data, done, undefined);
  }

  /**
   * Promise form of {@linkcode NbdConnection.send}.
   *
   * @param cmd An NBD command.
   * @param flags Command flags.
   * @param offset Byte offset.
   * @param length Byte length.
   * @param data Payload or target.
   * @returns Bytes done for READ/WRITE, 0 for others, or a negative errno.
   */
  request(
    cmd: number,
    flags: number,
    offset: number,
    length: number,
    data?: Uint8Array,
  ): Promise<number> {
    return new Promise((resolve) =>
      this.#send(cmd, flags, offset, length, data, resolve, undefined)
    );
  }

  /**
   * `NBD_CMD_BLOCK_STATUS` for `base:allocation`.
   *
   * @param offset Byte offset.
   * @param length Byte length.
   * @returns Extents from `offset` on, or a negative errno (-ENOTSUP when not negotiated).
   */
  blockStatus(offset: number, length: number): Promise<NbdExtent[] | number> {
    if (this.info.allocationContext === undefined) return Promise.resolve(-ENOTSUP);
    const extents: NbdExtent[] = [];
    return new Promise((resolve) =>
      this.#send(
        Cmd.BLOCK_STATUS,
        0,
        offset,
        length,
        undefined,
        (res) => resolve(res < 0 ? res : extents),
        extents,
      )
    );
  }

  #send(
    cmd: number,
    flags: number,
    offset: number,
    length: number,
    data: Uint8Array | undefined,
    done: Done,
    extents: NbdExtent[] | undefined,
  ): void {
    if (this.#dead) {
      const err = -this.#dead;
      queueMicrotask(() => done(err));
      return;
    }
    const cookie = this.#cookie = (this.#cookie + 1) >>> 0;
    const write = isWriteType(cmd);
    const p: Pending = {
      cmd,
      offset,
      length,
      target: cmd === Cmd.READ ? data : undefined,
      error: 0,
      tick: this.#tick,
      seq: write ? ++this.#writeSeq : 0,
      extents,
      done,
    };
    this.#pending.set(cookie, p);
    if (write) this.#writes.add(p);
    if (this.#ioTimeoutMs && this.#watchdog === undefined) this.#armWatchdog();
    const s = this.#sender;
    const at = s.reserve(28);
    const v = s.view;
    v.setUint32(at, Magic.REQUEST);
    v.setUint16(at + 4, flags);
    v.setUint16(at + 6, cmd);
    v.setUint32(at + 8, 0);
    v.setUint32(at + 12, cookie);
    v.setUint32(at + 16, Math.floor(offset / 4294967296));
    v.setUint32(at + 20, offset >>> 0);
    v.setUint32(at + 24, length);
    if (cmd === Cmd.WRITE && data) s.append(data);
  }

  /**
   * Resolves when every write-type request (WRITE, WRITE_ZEROES, TRIM) sent on this connection
   * so far has been answered: what a FLUSH sent afterwards covers.
   */
  writesAnswered(): Promise<void> {
    if (this.#writes.size === 0) return Promise.resolve();
    const seq = this.#writeSeq;
    return new Promise((resolve) => this.#barriers.push({ seq, resolve }));
  }

  #releaseBarriers(): void {
    let oldest = Infinity;
    for (const p of this.#writes) {
      oldest = p.seq; // insertion order: the first is the oldest unanswered write
      break;
    }
    const keep: Barrier[] = [];
    for (const b of this.#barriers) {
      if (b.seq < oldest) b.resolve();
      else keep.push(b);
    }
    this.#barriers = keep;
  }

  /** Resolves when no request is waiting for a reply. */
  idle(): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  #armWatchdog(): void {
    this.#watchdog = setInterval(() => {
      this.#tick++;
      let oldest: Pending | undefined;
      for (const p of this.#pending.values()) {
        oldest = p;
        break;
      }
      if (oldest === undefined) {
        clearInterval(this.#watchdog);
        this.#watchdog = undefined;
      } else if ((this.#tick - oldest.tick) * this.#tickMs > this.#ioTimeoutMs) {
        // The server stopped answering: nothing in flight can be answered any more.
        this.#fail(ETIMEDOUT);
        this.#closeSocket();
      }
    }, this.#tickMs);
  }

  #fail(errno: number): void {
    if (!this.#dead) this.#dead = errno;
    const all = [...this.#pending.values()];
    this.#pending.clear();
    this.#writes.clear();
    for (const p of all) p.done(-errno);
    this.#releaseBarriers();
    this.#settleIdle();
  }

  #settleIdle(): void {
    if (this.#pending.size > 0) return;
    if (this.#idle.length) { for (const w of this.#idle.splice(0)) w(); }
  }

  #finish(cookie: number, p: Pending): void {
    this.#pending.delete(cookie);
    if (p.seq) {
      this.#writes.delete(p);
      if (this.#barriers.length) this.#releaseBarriers();
    }
    p.done(p.error ? -p.error : (p.cmd === Cmd.READ || p.cmd === Cmd.WRITE ? p.length : 0));
    if (this.#pending.size === 0) this.#settleIdle();
  }

  #lookup(cookie: number): Pending {
    const p = this.#pending.get(cookie);
    if (!p) throw new ProtocolError(`reply for unknown cookie ${cookie}`);
    return p;
  }

  async #readLoop(): Promise<void> {
    const r = this.#reader;
    const v = r.view;
    try {
      for (;;) {
        if (!r.have(4)) await r.fill(4);
        const magic = v.getUint32(r.take(4));
        if (magic === Magic.SIMPLE_REPLY) {
          if (!r.have(12)) await r.fill(12);
          const at = r.take(12);
          const error = v.getUint32(at);
          const cookie = v.getUint32(at + 8);
          const p = this.#lookup(cookie);
          if (error) p.error = nbdErrno(error);
          else if (p.cmd === Cmd.READ && p.target) await r.readInto(p.target);
          this.#finish(cookie, p);
        } else if (magic === Magic.STRUCTURED_REPLY) {
          if (!r.have(16)) await r.fill(16);
          const at = r.take(16);
          const flags = v.getUint16(at);
          const type = v.getUint16(at + 2);
          const cookie = v.getUint32(at + 8);
          const length = v.getUint32(at + 12);
          const p = this.#lookup(cookie);
          if (type !== Chunk.NONE || length !== 0) await this.#chunk(p, type, length);
          if (flags & Chunk.FLAG_DONE) this.#finish(cookie, p);
        } else {
          throw new ProtocolError(`bad reply magic 0x${magic.toString(16)}`);
        }
      }
    } catch (err) {
      // The server went away, or sent something we cannot follow: fail what is in flight.
      this.#fail(err instanceof ProtocolError ? EIO : ENOTCONN);
      if (err instanceof ProtocolError) this.#closeSocket();
    }
  }

  async #chunk(p: Pending, type: number, length: number): Promise<void> {
    const r = this.#reader;
    const v = r.view;
    if (type === Chunk.OFFSET_DATA) {
      if (!r.have(8)) await r.fill(8);
      const at = Number(v.getBigUint64(r.take(8))) - p.offset;
      const n = length - 8;
      if (!p.target || at < 0 || at + n > p.length) {
        throw new ProtocolError("data chunk outside the read");
      }
      await r.readInto(p.target.subarray(at, at + n));
    } else if (type === Chunk.OFFSET_HOLE) {
      if (!r.have(12)) await r.fill(12);
      const h = r.take(12);
      const at = Number(v.getBigUint64(h)) - p.offset;
      const n = v.getUint32(h + 8);
      if (!p.target || at < 0 || at + n > p.length) {
        throw new ProtocolError("hole chunk outside the read");
      }
      p.target.fill(0, at, at + n);
    } else if (type === Chunk.BLOCK_STATUS && p.extents) {
      await r.skip(4); // the context id: we asked for one context only
      for (let left = length - 4; left >= 8; left -= 8) {
        if (!r.have(8)) await r.fill(8);
        const at = r.take(8);
        p.extents.push({ length: v.getUint32(at), flags: v.getUint32(at + 4) });
      }
    } else if (type & 0x8000) {
      // ERROR, ERROR_OFFSET, or an error type we do not know: the first word is the error.
      if (length < 4) throw new ProtocolError("short error chunk");
      if (!r.have(4)) await r.fill(4);
      p.error = nbdErrno(v.getUint32(r.take(4))) || EIO;
      await r.skip(length - 4);
    } else {
      await r.skip(length);
    }
  }

  #closeSocket(): void {
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  /**
   * Waits for every reply, sends `NBD_CMD_DISC`, and closes the socket. Safe to call twice.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    await this.idle();
    if (!this.#dead) {
      // NBD_CMD_DISC has no reply: send it once everything is answered, then close.
      const s = this.#sender;
      const at = s.reserve(28);
      s.view.setUint32(at, Magic.REQUEST);
      s.view.setUint32(at + 4, Cmd.DISC);
      s.view.setUint32(at + 8, 0);
      s.view.setUint32(at + 12, (this.#cookie + 1) >>> 0);
      s.view.setBigUint64(at + 16, 0n);
      s.view.setUint32(at + 24, 0);
      await s.drain();
      this.#dead = ENOTCONN;
    }
    this.#closeSocket();
    await this.#loop;
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
    this.#watchdog = undefined;
  }
}
