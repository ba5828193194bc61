/**
 * An NBD export as a kcopyd device: the same interface as a local device, so copies and zeroing
 * work between any mix of local and remote devices. Several connections when the server
 * advertises multi-conn; requests larger than the server's maximum are split.
 *
 * @module
 */
import type { BlockDevice } from "../block_device.ts";
import { DeviceError } from "../device_error.ts";
import type { Endpoint } from "../endpoint.ts";
import { connectExport } from "./connect.ts";
import type { TlsOptions } from "./handshake.ts";
import { type Done, NbdConnection, type NbdExtent } from "./connection.ts";
import { NbdEndpoint } from "./endpoint.ts";
import { Cmd, CmdFlag, Flag } from "./protocol.ts";
import { nbdId, parseNbdUri } from "./uri.ts";

export type { NbdExtent };

/** Options for opening an NBD export (also accepted by `openDevice`). */
export interface NbdOpenOptions {
  /** Open for writing (default false). */
  write?: boolean;
  /** Connections to open when the server allows multi-conn (default 4; 1 otherwise). */
  connections?: number;
  /** Give up opening after this many milliseconds (default 10 000). */
  connectTimeoutMs?: number;
  /**
   * Fail the connection when a request is unanswered this long, in milliseconds (default
   * 60 000; 0: never).
   */
  ioTimeoutMs?: number;
  /** Send every write with FUA (forced unit access) when the server supports it. */
  fua?: boolean;
  /**
   * `nbds://` only: CA certificates (PEM) that may have signed the server's certificate, besides
   * the system's (and the URI's `tls-certificates=DIR/ca-cert.pem`).
   */
  tlsCaCerts?: string[];
}

/** What the server offers for this export (from its transmission flags). */
export interface NbdFeatures {
  /** `NBD_CMD_FLUSH`. */
  flush: boolean;
  /** `NBD_CMD_FLAG_FUA` on writes. */
  fua: boolean;
  /** `NBD_CMD_TRIM`. */
  trim: boolean;
  /** `NBD_CMD_WRITE_ZEROES`. */
  writeZeroes: boolean;
  /** `NBD_CMD_FLAG_FAST_ZERO`. */
  fastZero: boolean;
  /** Several connections see the same data (`NBD_FLAG_CAN_MULTI_CONN`). */
  multiConn: boolean;
  /** Structured replies were negotiated. */
  structuredReplies: boolean;
  /** `NBD_CMD_BLOCK_STATUS` with `base:allocation`. */
  blockStatus: boolean;
}

const ENOTSUP = 95;
const EINVAL = 22;
/** WRITE_ZEROES and TRIM carry no payload: split them only at this (aligned) size. */
const NO_PAYLOAD_PIECE = 1 << 30;

/**
 * A remote export. Create with `openDevice("nbd://…")` or {@linkcode openNbd}.
 *
 * @example
 * ```ts ignore
 * await using disk = await openNbd("nbd://127.0.0.1/disk", { write: true });
 * const data = new Uint8Array(4096).fill(1);
 * console.log(await disk.pwrite(data, 0), await disk.flush()); // 4096 0
 * ```
 */
export class NbdDevice implements BlockDevice {
  /** Always `"nbd"`. */
  readonly kind = "nbd" as const;
  /** The URI as given. */
  readonly path: string;
  /** Export size in bytes. */
  readonly sizeBytes: bigint;
  /** Export size in whole 512-byte sectors. */
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
  /** Not applicable to remote exports (kept so `openDevice()` results share these fields). */
  readonly directFallback: string | undefined = undefined;
  /** Not applicable to remote exports: the server decides who may write. */
  readonly exclusive = false;
  /** `nbd:` and the normalized URI: `nbd:nbd://host:port/export`, `nbd:nbd+unix:///export?socket=/abs`. */
  readonly id: string;
  /** Transmission flags from the server. */
  readonly flags: number;
  /** What the server offers. */
  readonly features: NbdFeatures;
  /** Largest READ or WRITE sent in one request; larger ones are split. */
  readonly maxRequest: number;
  readonly #connections: readonly NbdConnection[];
  readonly #writeFlags: number;
  readonly #size: number;
  #next = 0;
  #closed: Promise<void> | undefined;
  #endpoint: NbdEndpoint | undefined;

  /**
   * Wraps handshaken connections; use {@linkcode openNbd} instead.
   *
   * @param uri The URI.
   * @param id The normalized id.
   * @param conns The connections (at least one).
   * @param options Write access and FUA.
   */
  constructor(
    uri: string,
    id: string,
    conns: NbdConnection[],
    options: { write: boolean; fua: boolean },
  ) {
    const info = conns[0].info;
    const f = info.flags;
    this.path = uri;
    this.id = id;
    this.#connections = conns;
    this.sizeBytes = info.size;
    this.sizeSectors = info.size / 512n;
    this.#size = Number(info.size);
    this.logicalBlockSize = Math.max(512, info.minBlock);
    this.physicalBlockSize = Math.max(this.logicalBlockSize, info.preferredBlock);
    // A multiple of the minimum block size, so split requests stay aligned.
    const max = Math.max(this.logicalBlockSize, Math.min(info.maxBlock, 32 << 20));
    this.maxRequest = max - (max % this.logicalBlockSize);
    this.flags = f;
    this.features = {
      flush: (f & Flag.SEND_FLUSH) !== 0,
      fua: (f & Flag.SEND_FUA) !== 0,
      trim: (f & Flag.SEND_TRIM) !== 0,
      writeZeroes: (f & Flag.SEND_WRITE_ZEROES) !== 0,
      fastZero: (f & Flag.SEND_FAST_ZERO) !== 0,
      multiConn: (f & Flag.CAN_MULTI_CONN) !== 0,
      structuredReplies: info.structured,
      blockStatus: info.allocationContext !== undefined,
    };
    this.writable = options.write;
    this.#writeFlags = options.fua && this.features.fua ? CmdFlag.FUA : 0;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Connections open to the server (several when it allows multi-conn). */
  get connectionCount(): number {
    return this.#connections.length;
  }

  /** Requests sent and not yet answered, over all connections. */
  get inFlight(): number {
    let n = 0;
    for (const c of this.#connections) n += c.inFlight;
    return n;
  }

  #conn(): NbdConnection {
    const c = this.#connections;
    for (let i = 0; i < c.length; i++) {
      const conn = c[this.#next];
      this.#next = this.#next + 1 === c.length ? 0 : this.#next + 1;
      if (!conn.dead) return conn;
    }
    return c[0];
  }

  /** Sends one command, split into requests of at most `piece` bytes; `done` gets the total. */
  #submit(
    cmd: number,
    flags: number,
    offset: number,
    length: number,
    data: Uint8Array | undefined,
    piece: number,
    done: Done,
  ): void {
    if (length <= piece) {
      this.#conn().send(cmd, flags, offset, length, data, done);
      return;
    }
    let left = Math.ceil(length / piece);
    let failed = 0;
    const part = (res: number) => {
      if (res < 0 && failed === 0) failed = res;
      if (--left === 0) done(failed || (cmd === Cmd.READ || cmd === Cmd.WRITE ? length : 0));
    };
    for (let at = 0; at < length; at += piece) {
      const n = Math.min(piece, length - at);
      this.#conn().send(cmd, flags, offset + at, n, data?.subarray(at, at + n), part);
    }
  }

  #check(offset: number, length: number, done: Done): boolean {
    if (this.#closed || offset < 0 || offset + length > this.#size) {
      queueMicrotask(() => done(-EINVAL));
      return false;
    }
    if (length === 0) {
      queueMicrotask(() => done(0));
      return false;
    }
    return true;
  }

  /**
   * Callback form of {@linkcode NbdDevice.pread}: no Promise per request.
   *
   * @param target Where the bytes go.
   * @param offset Byte offset in the export.
   * @param done Gets bytes read or a negative errno, never synchronously.
   */
  preadCb(target: Uint8Array, offset: number, done: (res: number) => void): void {
    if (!this.#check(offset, target.length, done)) return;
    this.#submit(Cmd.READ, 0, offset, target.length, target, this.maxRequest, done);
  }

  /**
   * Callback form of {@linkcode NbdDevice.pwrite}.
   *
   * @param data The bytes (unchanged until `done` runs).
   * @param offset Byte offset in the export.
   * @param done Gets bytes written or a negative errno, never synchronously.
   */
  pwriteCb(data: Uint8Array, offset: number, done: (res: number) => void): void {
    if (!this.#check(offset, data.length, done)) return;
    this.#submit(Cmd.WRITE, this.#writeFlags, offset, data.length, data, this.maxRequest, done);
  }

  /**
   * Reads `target.length` bytes at byte `offset` (`NBD_CMD_READ`).
   *
   * @param target Where the bytes go.
   * @param offset Byte offset in the export.
   * @returns Bytes read or a negative errno (never rejects).
   */
  pread(target: Uint8Array, offset: number): Promise<number> {
    return new Promise((resolve) => this.preadCb(target, offset, resolve));
  }

  /**
   * Writes `data` at byte `offset` (`NBD_CMD_WRITE`, with FUA when opened with `fua`).
   *
   * @param data The bytes.
   * @param offset Byte offset in the export.
   * @returns Bytes written or a negative errno (never rejects).
   */
  pwrite(data: Uint8Array, offset: number): Promise<number> {
    return new Promise((resolve) => this.pwriteCb(data, offset, resolve));
  }

  /**
   * `NBD_CMD_WRITE_ZEROES`: the server zeroes the range (it may punch a hole).
   *
   * The copy engine calls this without `fast`: when the server cannot zero quickly it zeroes
   * slowly, which still beats sending zeros over the network. `fast: true` sets
   * `NBD_CMD_FLAG_FAST_ZERO` for callers that have a cheaper way: the server then fails at once
   * with -EOPNOTSUPP instead of writing zeros itself.
   *
   * @param offset Byte offset.
   * @param length Bytes.
   * @param options `fast`: only if it is faster than writing zeros.
   * @returns Bytes zeroed, -EOPNOTSUPP when the server cannot (or not fast), or a negative errno.
   */
  zero(offset: number, length: number, options: { fast?: boolean } = {}): Promise<number> {
    const f = this.features;
    if (!f.writeZeroes || (options.fast && !f.fastZero)) return Promise.resolve(-ENOTSUP);
    const flags = this.#writeFlags | (options.fast ? CmdFlag.FAST_ZERO : 0);
    return new Promise((resolve) => {
      if (!this.#check(offset, length, resolve)) return;
      this.#submit(Cmd.WRITE_ZEROES, flags, offset, length, undefined, NO_PAYLOAD_PIECE, (r) => {
        resolve(r < 0 ? r : length);
      });
    });
  }

  /**
   * `NBD_CMD_TRIM`: the server may discard the range (reads then return unspecified data).
   *
   * @param offset Byte offset.
   * @param length Bytes.
   * @returns 0, -EOPNOTSUPP when the server does not offer trim, or a negative errno.
   */
  trim(offset: number, length: number): Promise<number> {
    if (!this.features.trim) return Promise.resolve(-ENOTSUP);
    return new Promise((resolve) => {
      if (!this.#check(offset, length, resolve)) return;
      this.#submit(Cmd.TRIM, 0, offset, length, undefined, NO_PAYLOAD_PIECE, resolve);
    });
  }

  /**
   * `NBD_CMD_FLUSH`, sent once every write sent before this call has been answered on every
   * connection (with multi-conn one flush covers them all; the server does not need it when it
   * does not offer flush).
   *
   * @returns 0 or a negative errno.
   */
  async flush(): Promise<number> {
    if (this.#closed) return -EINVAL;
    if (!this.features.flush) return 0;
    const conns = this.#connections;
    await Promise.all(conns.map((c) => c.writesAnswered()));
    const targets = this.features.multiConn ? [this.#conn()] : conns;
    const res = await Promise.all(targets.map((c) => c.request(Cmd.FLUSH, 0, 0, 0)));
    return res.find((r) => r < 0) ?? 0;
  }

  /**
   * Allocation of a range (`NBD_CMD_BLOCK_STATUS`, `base:allocation`).
   *
   * @param offset Byte offset.
   * @param length Bytes (at most 4 GiB - 4 KiB per call).
   * @returns Extents from `offset` on (they may cover less than asked, or a little more), or
   *   a negative errno (-EOPNOTSUPP when the server does not offer it).
   */
  blockStatus(offset: number, length: number): Promise<NbdExtent[] | number> {
    if (this.#closed || offset < 0 || offset + length > this.#size) {
      return Promise.resolve(-EINVAL);
    }
    const max = 0x100000000 - Math.max(4096, this.logicalBlockSize);
    return this.#conn().blockStatus(offset, Math.min(length, max));
  }

  /**
   * The device's endpoint: NBD I/O travels over the device's sockets, not the ring.
   *
   * @returns The endpoint (one per device).
   */
  endpoint(): Endpoint {
    this.#endpoint ??= new NbdEndpoint(this);
    return this.#endpoint;
  }

  /**
   * Waits for the answers to every request in flight, then disconnects (`NBD_CMD_DISC`) and
   * closes the sockets. Safe to call twice.
   */
  close(): Promise<void> {
    this.#closed ??= Promise.all(this.#connections.map((c) => c.close())).then(() => {});
    return this.#closed;
  }

  /** Same as {@linkcode NbdDevice.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function tlsOptions(
  uri: string,
  tls: { hostname: string; certificates?: string },
  extra: string[] = [],
): Promise<TlsOptions> {
  const caCerts = [...extra];
  if (tls.certificates) {
    const path = `${tls.certificates}/ca-cert.pem`;
    try {
      caCerts.push(await Deno.readTextFile(path));
    } catch (err) {
      const code = err instanceof Deno.errors.NotFound ? "ENOENT" : "EACCES";
      throw new DeviceError(
        uri,
        code,
        `Cannot open NBD export "${uri}": cannot read the CA certificate "${path}" (${code})`,
      );
    }
  }
  return { hostname: tls.hostname, caCerts };
}

/**
 * Connects to an NBD export.
 *
 * @param uri `nbd://host[:port]/export`, `nbd+unix:///export?socket=PATH`, or with TLS
 *   `nbds://host[:port]/export?tls-certificates=DIR` (DIR holds the CA's `ca-cert.pem`).
 * @param options Write access, connections, timeouts, FUA, CA certificates.
 * @returns The device; close it with `await dev.close()` or `await using`.
 * @throws {DeviceError} For a refused connection (ECONNREFUSED), a missing socket (ENOENT), a
 *   timeout (ETIMEDOUT), an unknown export (ENXIO), TLS required or a certificate not trusted
 *   (EACCES), or a read-only export opened for writing (EROFS).
 * @throws {TypeError} For a malformed URI.
 * @example
 * ```ts ignore
 * await using disk = await openNbd("nbd://127.0.0.1:10809/disk", { write: true });
 * console.log(disk.sizeSectors, disk.connectionCount);
 * ```
 */
export async function openNbd(uri: string, options: NbdOpenOptions = {}): Promise<NbdDevice> {
  const addr = parseNbdUri(uri);
  const tls = addr.tls && await tlsOptions(uri, addr.tls, options.tlsCaCerts);
  const timeout = options.connectTimeoutMs ?? 10_000;
  const io = { ioTimeoutMs: options.ioTimeoutMs ?? 60_000 };
  const write = options.write ?? false;
  const first = await connectExport(uri, addr, timeout, tls);
  const conns = [new NbdConnection(first.conn, first.reader, first.info, io)];
  const { size, flags } = first.info;
  try {
    if (write && flags & Flag.READ_ONLY) {
      throw new DeviceError(
        uri,
        "EROFS",
        `Cannot open NBD export "${uri}" for writing: the server exports it read-only (EROFS)`,
      );
    }
    const want = flags & Flag.CAN_MULTI_CONN ? Math.max(1, options.connections ?? 4) : 1;
    const more = await Promise.allSettled(
      Array.from({ length: want - 1 }, () => connectExport(uri, addr, timeout, tls)),
    );
    for (const m of more) {
      if (m.status !== "fulfilled") continue; // fewer connections still work
      const c = new NbdConnection(m.value.conn, m.value.reader, m.value.info, io);
      // Another connection must see the same export; otherwise do without it.
      if (m.value.info.size === size && m.value.info.flags === flags) conns.push(c);
      else await c.close();
    }
  } catch (err) {
    await Promise.all(conns.map((c) => c.close()));
    throw err;
  }
  // The same socket under another name (a symlink, a relative path) is the same export.
  const socket = addr.socket && await Deno.realPath(addr.socket).catch(() => addr.socket);
  const id = socket ? nbdId({ ...addr, socket }) : addr.id;
  return new NbdDevice(uri, id, conns, { write, fua: options.fua ?? false });
}
