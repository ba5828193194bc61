/**
 * An NBD export as a kcopyd device: the same interface as a local device, so copies and zeroing
 * work between any mix of local and remote devices. Several connections when the server
 * advertises multi-conn.
 *
 * @module
 */
import type { BlockDevice } from "../block_device.ts";
import { DeviceError } from "../device_error.ts";
import type { Endpoint } from "../endpoint.ts";
import { nativeView } from "../native.ts";
import { NbdConnection } from "./connection.ts";
import { type ExportInfo, handshake, HandshakeError } from "./handshake.ts";
import { Cmd, CmdFlag, Flag } from "./protocol.ts";
import { type NbdAddress, parseNbdUri } from "./uri.ts";
import { ConnectionClosed, Reader } from "./wire.ts";

/** Options for opening an NBD export (also accepted by `openDevice`). */
export interface NbdOpenOptions {
  /** Open for writing (default false). */
  write?: boolean;
  /** Connections to open when the server allows multi-conn (default 4). */
  connections?: number;
  /** Give up connecting after this many milliseconds (default 10 000). */
  connectTimeoutMs?: number;
  /** Fail requests unanswered for this long, in milliseconds (default 60 000; 0: never). */
  ioTimeoutMs?: number;
  /** Send every write with FUA (forced unit access). */
  fua?: boolean;
}

const ZERO_PIECE = 1 << 30;

function connectError(uri: string, err: unknown): DeviceError {
  const e = err as Error;
  let code = "EIO";
  let why = e.message;
  if (e instanceof Deno.errors.ConnectionRefused) {
    code = "ECONNREFUSED";
    why = "connection refused: is the NBD server running and listening there?";
  } else if (e instanceof Deno.errors.NotFound) {
    code = "ENOENT";
    why = "no such socket";
  } else if (e instanceof Deno.errors.TimedOut || e.name === "TimeoutError") {
    code = "ETIMEDOUT";
    why = "timed out";
  } else if (e instanceof Deno.errors.PermissionDenied) {
    code = "EACCES";
    why = "permission denied";
  } else if (e instanceof HandshakeError) {
    code = e.code;
  } else if (e instanceof ConnectionClosed) {
    code = "ECONNRESET";
    why = "the server closed the connection during the handshake";
  }
  return new DeviceError(uri, code, `Cannot open NBD export "${uri}": ${why} (${code})`);
}

async function connectOne(
  addr: NbdAddress,
  timeoutMs: number,
): Promise<{ conn: Deno.Conn; reader: Reader; info: ExportInfo }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = addr.socket
    ? Deno.connect({ transport: "unix", path: addr.socket })
    : Deno.connect({ hostname: addr.hostname!, port: addr.port! });
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Deno.errors.TimedOut("connect timed out")), timeoutMs);
  });
  let conn: Deno.Conn | undefined;
  try {
    conn = await Promise.race([connecting, timeout]);
    const reader = new Reader(conn);
    const info = await Promise.race([handshake(conn, reader, addr.exportName), timeout]);
    return { conn, reader, info };
  } catch (err) {
    if (conn) {
      try {
        conn.close();
      } catch { /* closed */ }
    } else {
      connecting.then((c) => c.close(), () => {}); // connected after the timeout
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** A remote export. Create with `openDevice("nbd://…")` or {@linkcode openNbd}. */
export class NbdDevice implements BlockDevice {
  /** Always `"nbd"`. */
  readonly kind = "nbd" as const;
  /** The URI as given. */
  readonly path: string;
  /** Export size in bytes. */
  readonly sizeBytes: bigint;
  /** Export size in 512-byte sectors. */
  readonly sizeSectors: bigint;
  /** The server's minimum block size, at least 512. */
  readonly logicalBlockSize: number;
  /** The server's preferred block size. */
  readonly physicalBlockSize: number;
  /** Remote exports behave as block devices. */
  readonly isBlockDevice = true;
  /** Opened for writing. */
  readonly writable: boolean;
  /** No local page cache is involved. */
  readonly direct = true;
  /** Not applicable to remote exports. */
  readonly directFallback: string | undefined = undefined;
  /** Not applicable to remote exports (the server decides who may write). */
  readonly exclusive = false;
  /** `nbd:host:port/export` or `nbd+unix:socket/export`. */
  readonly id: string;
  /** Transmission flags from the server. */
  readonly flags: number;
  /** Largest request the server accepts. */
  readonly maxBlock: number;
  readonly #connections: readonly NbdConnection[];
  readonly #fua: boolean;
  #next = 0;
  #closed = false;
  #endpoint: Endpoint | undefined;

  /**
   * Wraps handshaken connections; use {@linkcode openNbd} instead.
   *
   * @param uri The URI.
   * @param id The canonical id.
   * @param conns The connections.
   * @param write Opened for writing.
   * @param fua Send writes with FUA.
   */
  constructor(uri: string, id: string, conns: NbdConnection[], write: boolean, fua: boolean) {
    const info = conns[0].info;
    this.path = uri;
    this.id = id;
    this.#connections = conns;
    this.sizeBytes = info.size;
    this.sizeSectors = info.size / 512n;
    this.logicalBlockSize = Math.max(512, info.minBlock);
    this.physicalBlockSize = Math.max(this.logicalBlockSize, info.preferredBlock || 4096);
    this.maxBlock = Math.max(this.logicalBlockSize, Math.min(info.maxBlock || 32 << 20, 32 << 20));
    this.flags = info.flags;
    this.writable = write;
    this.#fua = fua && (info.flags & Flag.SEND_FUA) !== 0;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Connections open to the server (several when it allows multi-conn). */
  get connectionCount(): number {
    return this.#connections.length;
  }

  #conn(): NbdConnection {
    const c = this.#connections;
    for (let i = 0; i < c.length; i++) {
      const conn = c[(this.#next++) % c.length];
      if (!conn.dead) return conn;
    }
    return c[0];
  }

  async #split(
    cmd: number,
    flags: number,
    offset: number,
    length: number,
    view: Uint8Array | undefined,
    piece: number,
  ): Promise<number> {
    const parts: Promise<number>[] = [];
    for (let at = 0; at < length; at += piece) {
      const n = Math.min(piece, length - at);
      const sub = view?.subarray(at, at + n);
      parts.push(
        this.#conn().request(
          cmd,
          flags,
          offset + at,
          n,
          cmd === Cmd.WRITE ? sub : undefined,
          cmd === Cmd.READ ? sub : undefined,
        ),
      );
    }
    const res = parts.length === 1 ? [await parts[0]] : await Promise.all(parts);
    const bad = res.find((r) => r < 0);
    return bad ?? length;
  }

  /**
   * Reads into native memory.
   *
   * @param address Native address.
   * @param length Bytes.
   * @param offset Byte offset in the export.
   * @returns Bytes read or a negative errno.
   */
  read(address: number, length: number, offset: number): Promise<number> {
    const view = new Uint8Array(nativeView(address, length));
    return this.#split(Cmd.READ, 0, offset, length, view, this.maxBlock);
  }

  /**
   * Writes from native memory.
   *
   * @param address Native address.
   * @param length Bytes.
   * @param offset Byte offset in the export.
   * @returns Bytes written or a negative errno.
   */
  write(address: number, length: number, offset: number): Promise<number> {
    const view = new Uint8Array(nativeView(address, length));
    return this.#split(Cmd.WRITE, this.#fua ? CmdFlag.FUA : 0, offset, length, view, this.maxBlock);
  }

  /**
   * `NBD_CMD_WRITE_ZEROES` (with FAST_ZERO not set: the server may write zeros itself).
   *
   * @param offset Byte offset.
   * @param length Bytes.
   * @returns Bytes zeroed, or -EOPNOTSUPP when the server cannot, or another negative errno.
   */
  zero(offset: number, length: number): Promise<number> {
    if (!(this.flags & Flag.SEND_WRITE_ZEROES)) return Promise.resolve(-95);
    return this.#split(Cmd.WRITE_ZEROES, 0, offset, length, undefined, ZERO_PIECE);
  }

  /**
   * `NBD_CMD_TRIM`: the server may discard the range.
   *
   * @param offset Byte offset.
   * @param length Bytes.
   * @returns 0 or a negative errno (-EOPNOTSUPP when the server does not offer trim).
   */
  async trim(offset: number, length: number): Promise<number> {
    if (!(this.flags & Flag.SEND_TRIM)) return -95;
    const r = await this.#split(Cmd.TRIM, 0, offset, length, undefined, ZERO_PIECE);
    return r < 0 ? r : 0;
  }

  /**
   * `NBD_CMD_FLUSH`, sent after every write in flight on every connection has been answered.
   *
   * @returns 0 or a negative errno.
   */
  async flush(): Promise<number> {
    if (!(this.flags & Flag.SEND_FLUSH)) return 0;
    await Promise.all(this.#connections.map((c) => c.idle()));
    const targets = this.flags & Flag.CAN_MULTI_CONN ? [this.#conn()] : this.#connections;
    const res = await Promise.all(targets.map((c) => c.request(Cmd.FLUSH, 0, 0, 0)));
    return res.find((r) => r < 0) ?? 0;
  }

  /**
   * Allocation of a range (`base:allocation`), if the server offers it.
   *
   * @param offset Byte offset.
   * @param length Bytes.
   * @returns Extents (`flags` bit 0: hole, bit 1: reads as zeros), or a negative errno.
   */
  blockStatus(
    offset: number,
    length: number,
  ): Promise<{ length: number; flags: number }[] | number> {
    return this.#conn().blockStatus(offset, Math.min(length, 0xffffffff - 4095));
  }

  /**
   * The device's endpoint: NBD I/O does not use the ring.
   *
   * @returns The endpoint.
   */
  endpoint(): Endpoint {
    this.#endpoint ??= {
      read: (a, l, o) => this.read(a, l, o),
      write: (a, l, o) => this.write(a, l, o),
      zero: (o, l) => this.zero(o, l),
      flush: () => this.flush(),
    };
    return this.#endpoint;
  }

  /** Answers what is in flight, disconnects (NBD_CMD_DISC) and closes. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#connections.map((c) => c.close()));
  }

  /** Same as {@linkcode NbdDevice.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Connects to an NBD export.
 *
 * @param uri `nbd://host[:port]/export` or `nbd+unix:///export?socket=PATH`.
 * @param options Write access, connections, timeouts, FUA.
 * @returns The device.
 * @throws {DeviceError} For a refused connection (ECONNREFUSED), a missing socket (ENOENT), a
 *   timeout (ETIMEDOUT), an unknown export (ENXIO), or a read-only export opened for writing
 *   (EROFS).
 * @throws {TypeError} For a malformed URI.
 * @example
 * ```ts ignore
 * await using disk = await openNbd("nbd://127.0.0.1:10809/disk", { write: true });
 * console.log(disk.sizeSectors);
 * ```
 */
export async function openNbd(uri: string, options: NbdOpenOptions = {}): Promise<NbdDevice> {
  const addr = parseNbdUri(uri);
  const timeout = options.connectTimeoutMs ?? 10_000;
  const ioTimeout = options.ioTimeoutMs ?? 60_000;
  let first;
  try {
    first = await connectOne(addr, timeout);
  } catch (err) {
    throw connectError(uri, err);
  }
  const conns = [new NbdConnection(first.conn, first.reader, first.info, ioTimeout)];
  const write = options.write ?? false;
  try {
    if (write && first.info.flags & Flag.READ_ONLY) {
      throw new DeviceError(
        uri,
        "EROFS",
        `Cannot open NBD export "${uri}" for writing: the server exports it read-only (EROFS)`,
      );
    }
    const want = first.info.flags & Flag.CAN_MULTI_CONN ? options.connections ?? 4 : 1;
    for (let i = 1; i < want; i++) {
      try {
        const c = await connectOne(addr, timeout);
        conns.push(new NbdConnection(c.conn, c.reader, c.info, ioTimeout));
      } catch {
        break; // fewer connections still work
      }
    }
  } catch (err) {
    await Promise.all(conns.map((c) => c.close()));
    throw err;
  }
  return new NbdDevice(uri, addr.id, conns, write, options.fua ?? false);
}
