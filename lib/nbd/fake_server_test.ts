// A scripted NBD server for the client's unit tests (no tests here: the *_test.ts name keeps it
// out of the published package). It serves an in-memory export on a Unix socket, can answer in
// reverse order, split reads into data and hole chunks, refuse, fail, hang, drop or send garbage,
// and records what clients did wrong.
import { Chunk, Cmd, Flag, Handshake, Info, Magic, Opt, Rep } from "./protocol.ts";

/** What to do with one request instead of serving it. */
export type Fault = number | "drop" | "garbage" | "hang" | undefined;

/** Options for {@linkcode startFakeServer}. */
export interface FakeOptions {
  /** Export size in bytes (default 1 MiB). */
  size?: number;
  /** The only export name accepted (default: any). */
  exportName?: string;
  /** Extra transmission flags (default: flush, FUA, trim, write zeroes, multi-conn). */
  flags?: number;
  /** NBD_INFO_BLOCK_SIZE to send: minimum, preferred, maximum. */
  blockSize?: [number, number, number];
  /** Offer structured replies (default true). */
  structured?: boolean;
  /** Answer each batch of requests in reverse order (default true). */
  reorder?: boolean;
  /** Send reads as several data/hole chunks, last piece first (default true). */
  chunkReads?: boolean;
  /** Never greet (for connect timeouts). */
  silent?: boolean;
  /** Reject requests larger than the advertised maximum with EINVAL, and count them. */
  strictMax?: boolean;
  /** Refuse NBD_OPT_GO as unsupported (an old server): only NBD_OPT_EXPORT_NAME works. */
  noGo?: boolean;
  /** Per-request fault injection. */
  fault?: (cmd: number, offset: number, length: number) => Fault;
}

/** A running fake server. */
export interface FakeServer extends AsyncDisposable {
  /** `nbd+unix:///?socket=…` (or with the export name). */
  readonly uri: string;
  /** The export's bytes. */
  readonly data: Uint8Array;
  /** Requests seen, by command. */
  readonly counts: Map<number, number>;
  /** Largest request length seen. */
  maxSeen: number;
  /** FLUSH requests that arrived while a write was still unanswered (on any connection). */
  flushViolations: number;
  /** Connections accepted. */
  connections: number;
  /** Requests in flight when a client disconnected. */
  abandoned: number;
}

const enc = new TextEncoder();

class Peer {
  readonly conn: Deno.Conn;
  #buf = new Uint8Array(0);
  #writing: Promise<void> = Promise.resolve();
  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }
  async read(n: number): Promise<Uint8Array | null> {
    while (this.#buf.length < n) {
      const chunk = new Uint8Array(Math.max(65536, n));
      const got = await this.conn.read(chunk).catch(() => null);
      if (got === null) return null;
      const next = new Uint8Array(this.#buf.length + got);
      next.set(this.#buf);
      next.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = next;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
  write(...parts: Uint8Array[]): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      for (const p of parts) {
        let off = 0;
        while (off < p.length) off += await this.conn.write(p.subarray(off));
      }
    }).catch(() => {});
    return this.#writing;
  }
}

function bytes(build: (v: DataView) => void, n: number): Uint8Array {
  const b = new Uint8Array(n);
  build(new DataView(b.buffer));
  return b;
}

function optReply(opt: number, type: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(20 + data.length);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, Magic.OPT_REPLY);
  v.setUint32(8, opt);
  v.setUint32(12, type);
  v.setUint32(16, data.length);
  out.set(data, 20);
  return out;
}

function chunk(flags: number, type: number, cookie: bigint, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(20 + payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, Magic.STRUCTURED_REPLY);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  v.setBigUint64(8, cookie);
  v.setUint32(16, payload.length);
  out.set(payload, 20);
  return out;
}

/**
 * Starts a fake server on a Unix socket in a temp dir.
 *
 * @param options Behaviour.
 * @returns The server; dispose it to stop it.
 */
export async function startFakeServer(options: FakeOptions = {}): Promise<FakeServer> {
  const dir = await Deno.makeTempDir({ prefix: "kcopyd-fake-nbd-" });
  const path = `${dir}/nbd.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const size = options.size ?? 1 << 20;
  const data = new Uint8Array(size);
  const structuredOk = options.structured ?? true;
  const reorder = options.reorder ?? true;
  const chunkReads = options.chunkReads ?? true;
  const tflags = Flag.HAS_FLAGS |
    (options.flags ??
      (Flag.SEND_FLUSH | Flag.SEND_FUA | Flag.SEND_TRIM | Flag.SEND_WRITE_ZEROES |
        Flag.CAN_MULTI_CONN));
  const conns = new Set<Deno.Conn>();
  const handlers = new Set<Promise<void>>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let unansweredWrites = 0;
  const server: FakeServer = {
    uri: `nbd+unix:///${encodeURIComponent(options.exportName ?? "")}?socket=${path}`,
    data,
    counts: new Map(),
    maxSeen: 0,
    flushViolations: 0,
    connections: 0,
    abandoned: 0,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const t of timers) clearTimeout(t);
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.all(handlers);
      await accepting;
      await Deno.remove(dir, { recursive: true });
    },
  };

  async function negotiate(peer: Peer): Promise<{ structured: boolean; meta: boolean } | null> {
    await peer.write(bytes((v) => {
      v.setBigUint64(0, Magic.NBDMAGIC);
      v.setBigUint64(8, Magic.IHAVEOPT);
      v.setUint16(16, Handshake.FIXED_NEWSTYLE | Handshake.NO_ZEROES);
    }, 18));
    if (!(await peer.read(4))) return null;
    let structured = false;
    let meta = false;
    for (;;) {
      const h = await peer.read(16);
      if (!h) return null;
      const v = new DataView(h.buffer);
      const opt = v.getUint32(8);
      const body = (await peer.read(v.getUint32(12)))!;
      const bv = new DataView(body.buffer);
      const name = new TextDecoder().decode(
        body.subarray(4, 4 + (body.length ? bv.getUint32(0) : 0)),
      );
      if (opt === Opt.STRUCTURED_REPLY) {
        structured = structuredOk;
        await peer.write(optReply(opt, structuredOk ? Rep.ACK : Rep.ERR_UNSUP));
      } else if (opt === Opt.SET_META_CONTEXT) {
        if (options.exportName !== undefined && name !== options.exportName) {
          await peer.write(optReply(opt, Rep.ERR_UNKNOWN));
          continue;
        }
        meta = true;
        const ctx = enc.encode("base:allocation");
        await peer.write(
          optReply(
            opt,
            Rep.META_CONTEXT,
            bytes((w) => {
              w.setUint32(0, 1);
              new Uint8Array(w.buffer).set(ctx, 4);
            }, 4 + ctx.length),
          ),
          optReply(opt, Rep.ACK),
        );
      } else if (opt === Opt.EXPORT_NAME && options.noGo) {
        await peer.write(bytes((w) => {
          w.setBigUint64(0, BigInt(size));
          w.setUint16(8, tflags);
        }, 10));
        return { structured, meta };
      } else if (opt === Opt.GO && !options.noGo) {
        if (options.exportName !== undefined && name !== options.exportName) {
          await peer.write(optReply(opt, Rep.ERR_UNKNOWN, enc.encode(`no export "${name}"`)));
          continue;
        }
        const parts = [optReply(
          opt,
          Rep.INFO,
          bytes((w) => {
            w.setUint16(0, Info.EXPORT);
            w.setBigUint64(2, BigInt(size));
            w.setUint16(10, tflags);
          }, 12),
        )];
        const bs = options.blockSize;
        if (bs) {
          parts.push(optReply(
            opt,
            Rep.INFO,
            bytes((w) => {
              w.setUint16(0, Info.BLOCK_SIZE);
              w.setUint32(2, bs[0]);
              w.setUint32(6, bs[1]);
              w.setUint32(10, bs[2]);
            }, 14),
          ));
        }
        parts.push(optReply(opt, Rep.ACK));
        await peer.write(...parts);
        return { structured, meta };
      } else {
        await peer.write(optReply(opt, Rep.ERR_UNSUP));
      }
    }
  }

  async function serve(conn: Deno.Conn): Promise<void> {
    server.connections++;
    const peer = new Peer(conn);
    if (options.silent) {
      await peer.read(1);
      return;
    }
    const mode = await negotiate(peer);
    if (!mode) return;
    let held: { run: () => Promise<void> }[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    let inFlight = 0;
    const release = () => {
      if (timer !== undefined) {
        clearTimeout(timer);
        timers.delete(timer);
        timer = undefined;
      }
      const batch = reorder ? held.reverse() : held;
      held = [];
      for (const r of batch) r.run();
    };
    for (;;) {
      const h = await peer.read(28);
      if (!h) break;
      const v = new DataView(h.buffer);
      const flags = v.getUint16(4);
      const cmd = v.getUint16(6);
      const cookie = v.getBigUint64(8);
      const offset = Number(v.getBigUint64(16));
      const length = v.getUint32(24);
      if (cmd === Cmd.DISC) break;
      server.counts.set(cmd, (server.counts.get(cmd) ?? 0) + 1);
      server.maxSeen = Math.max(server.maxSeen, length);
      let payload: Uint8Array | undefined;
      if (cmd === Cmd.WRITE) {
        payload = (await peer.read(length))!;
        if (!payload) break;
        unansweredWrites++;
      }
      let fault = options.fault?.(cmd, offset, length);
      if (fault === "drop") {
        server.abandoned += inFlight + 1;
        break;
      }
      if (fault === "garbage") {
        await peer.write(new Uint8Array(32).fill(0xee));
        continue;
      }
      if (fault === undefined && options.strictMax && options.blockSize) {
        if (length > options.blockSize[2] && (cmd === Cmd.READ || cmd === Cmd.WRITE)) fault = 22;
      }
      if (fault === undefined && offset + length > size) fault = 22;
      if (cmd === Cmd.FLUSH && unansweredWrites > 0) {
        server.flushViolations++;
        fault = 22;
      }
      inFlight++;
      const isWrite = cmd === Cmd.WRITE;
      held.push({
        run: async () => {
          if (fault === "hang") return;
          const replies = answer(cmd, flags, cookie, offset, length, payload, fault, mode);
          if (isWrite) unansweredWrites--;
          inFlight--;
          await peer.write(...replies);
        },
      });
      if (held.length >= 8) release();
      else if (timer === undefined) {
        timer = setTimeout(release, 2);
        timers.add(timer);
      }
    }
    release();
    if (inFlight > 0) server.abandoned += inFlight;
  }

  function answer(
    cmd: number,
    _flags: number,
    cookie: bigint,
    offset: number,
    length: number,
    payload: Uint8Array | undefined,
    fault: Fault,
    mode: { structured: boolean; meta: boolean },
  ): Uint8Array[] {
    if (typeof fault === "number") {
      if (!mode.structured) return [simple(cookie, fault)];
      const msg = enc.encode("injected");
      return [chunk(
        Chunk.FLAG_DONE,
        Chunk.ERROR,
        cookie,
        bytes((w) => {
          w.setUint32(0, fault);
          w.setUint16(4, msg.length);
          new Uint8Array(w.buffer).set(msg, 6);
        }, 6 + msg.length),
      )];
    }
    if (cmd === Cmd.WRITE) data.set(payload!, offset);
    if (cmd === Cmd.WRITE_ZEROES || cmd === Cmd.TRIM) data.fill(0, offset, offset + length);
    if (cmd === Cmd.BLOCK_STATUS && mode.meta) {
      const ext: number[] = [];
      for (let at = offset; at < offset + length;) {
        const n = Math.min(4096, offset + length - at);
        const zero = data.subarray(at, at + n).every((b) => b === 0) ? 3 : 0;
        if (ext.length && ext[ext.length - 1] === zero) ext[ext.length - 2] += n;
        else ext.push(n, zero);
        at += n;
      }
      return [chunk(
        Chunk.FLAG_DONE,
        Chunk.BLOCK_STATUS,
        cookie,
        bytes((w) => {
          w.setUint32(0, 1);
          for (let i = 0; i < ext.length; i++) w.setUint32(4 + i * 4, ext[i]);
        }, 4 + ext.length * 4),
      )];
    }
    if (cmd !== Cmd.READ) {
      return [
        mode.structured ? chunk(Chunk.FLAG_DONE, 0, cookie, new Uint8Array(0)) : simple(cookie, 0),
      ];
    }
    const bytesOut = data.slice(offset, offset + length);
    if (!mode.structured) return [simple(cookie, 0), bytesOut];
    if (!chunkReads || length < 1024) {
      return [chunk(Chunk.FLAG_DONE, Chunk.OFFSET_DATA, cookie, withOffset(offset, bytesOut))];
    }
    // Three pieces, last first; all-zero pieces as holes.
    const cuts = [
      0,
      Math.floor(length / 3 / 512) * 512,
      Math.floor((2 * length) / 3 / 512) * 512,
      length,
    ];
    const out: Uint8Array[] = [];
    for (let i = 2; i >= 0; i--) {
      const piece = bytesOut.subarray(cuts[i], cuts[i + 1]);
      if (piece.length === 0) continue;
      if (piece.every((b) => b === 0)) {
        out.push(chunk(
          0,
          Chunk.OFFSET_HOLE,
          cookie,
          bytes((w) => {
            w.setBigUint64(0, BigInt(offset + cuts[i]));
            w.setUint32(8, piece.length);
          }, 12),
        ));
      } else {
        out.push(chunk(0, Chunk.OFFSET_DATA, cookie, withOffset(offset + cuts[i], piece)));
      }
    }
    out.push(chunk(Chunk.FLAG_DONE, Chunk.NONE, cookie, new Uint8Array(0)));
    return out;
  }

  function withOffset(offset: number, piece: Uint8Array): Uint8Array {
    const out = new Uint8Array(8 + piece.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(offset));
    out.set(piece, 8);
    return out;
  }

  function simple(cookie: bigint, error: number): Uint8Array {
    return bytes((w) => {
      w.setUint32(0, Magic.SIMPLE_REPLY);
      w.setUint32(4, error);
      w.setBigUint64(8, cookie);
    }, 16);
  }

  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      conns.add(conn);
      const h = serve(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed */ }
        handlers.delete(h);
      });
      handlers.add(h);
    }
  })();
  return server;
}
