/**
 * The fixed-newstyle handshake: TLS when asked (`NBD_OPT_STARTTLS`), structured replies, the
 * `base:allocation` meta context, and `NBD_OPT_GO` with block-size information (or
 * `NBD_OPT_EXPORT_NAME` with servers that predate `NBD_OPT_GO`).
 *
 * @module
 */
import { HandshakeError, isError, readReply, refusal, sendOption } from "./options.ts";
import { Handshake, Info, Magic, Opt, Rep } from "./protocol.ts";
import { Reader, writeAll } from "./wire.ts";

export { HandshakeError };

/** What the server told us about the export. */
export interface ExportInfo {
  /** Size in bytes. */
  size: bigint;
  /** Transmission flags (`NBD_FLAG_*`). */
  flags: number;
  /** Minimum block size (1 when the server did not say). */
  minBlock: number;
  /** Preferred block size (4096 when the server did not say). */
  preferredBlock: number;
  /** Largest READ/WRITE payload (32 MiB when the server did not say). */
  maxBlock: number;
  /** Structured replies were negotiated. */
  structured: boolean;
  /** Context id of `base:allocation`, if the server offers it. */
  allocationContext?: number;
}

/** TLS settings for {@linkcode handshake}. */
export interface TlsOptions {
  /** The name the server's certificate must carry (host name or IP address). */
  hostname: string;
  /** Extra CA certificates (PEM) to trust besides the system's. */
  caCerts?: string[];
}

/** A connection after the handshake: TLS may have replaced the socket. */
export interface Negotiated {
  /** The connection to use from now on. */
  conn: Deno.Conn;
  /** Its reader. */
  reader: Reader;
  /** What the server said. */
  info: ExportInfo;
}

const enc = new TextEncoder();

function withName(name: Uint8Array, extra: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(4 + name.length + extra);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, name.length);
  bytes.set(name, 4);
  return { bytes, view };
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

async function startTls(
  conn: Deno.Conn,
  reader: Reader,
  tls: TlsOptions,
): Promise<{ conn: Deno.Conn; reader: Reader }> {
  await sendOption(conn, Opt.STARTTLS, new Uint8Array(0));
  const r = await readReply(reader, Opt.STARTTLS);
  if (r.type !== Rep.ACK) {
    const e = refusal(r, "TLS (NBD_OPT_STARTTLS)", "");
    throw new HandshakeError(e.code === "EOPNOTSUPP" ? "EPROTONOSUPPORT" : e.code, e.message);
  }
  if (reader.buffered) throw new HandshakeError("EPROTO", "the server spoke before TLS started");
  if (!("setNoDelay" in conn)) {
    throw new HandshakeError("EPROTONOSUPPORT", "TLS works over TCP only, not Unix sockets");
  }
  try {
    const secure = await Deno.startTls(conn as Deno.TcpConn, {
      hostname: tls.hostname,
      caCerts: tls.caCerts,
    });
    await secure.handshake();
    return { conn: secure, reader: new Reader(secure) };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new HandshakeError("EACCES", `the TLS handshake failed: ${why}`);
  }
}

async function structuredReplies(conn: Deno.Conn, reader: Reader): Promise<boolean> {
  await sendOption(conn, Opt.STRUCTURED_REPLY, new Uint8Array(0));
  return (await readReply(reader, Opt.STRUCTURED_REPLY)).type === Rep.ACK;
}

/** Asks for `base:allocation`; returns its context id, or undefined. */
async function allocationContext(
  conn: Deno.Conn,
  reader: Reader,
  name: Uint8Array,
  exportName: string,
): Promise<number | undefined> {
  const query = enc.encode("base:allocation");
  const { bytes, view } = withName(name, 8 + query.length);
  view.setUint32(4 + name.length, 1);
  view.setUint32(8 + name.length, query.length);
  bytes.set(query, 12 + name.length);
  await sendOption(conn, Opt.SET_META_CONTEXT, bytes);
  let id: number | undefined;
  for (;;) {
    const r = await readReply(reader, Opt.SET_META_CONTEXT);
    if (r.type === Rep.META_CONTEXT && r.data.length >= 4) {
      id = new DataView(r.data.buffer).getUint32(0);
    } else if (r.type === Rep.ACK) {
      return id;
    } else if (isError(r.type)) {
      if (r.type === Rep.ERR_UNKNOWN) throw refusal(r, "the export", exportName);
      return undefined; // not offered: no block status
    }
  }
}

/** `NBD_OPT_GO`; undefined when the server does not know the option. */
async function go(
  conn: Deno.Conn,
  reader: Reader,
  name: Uint8Array,
  exportName: string,
  info: ExportInfo,
): Promise<ExportInfo | undefined> {
  const { bytes, view } = withName(name, 4);
  view.setUint16(4 + name.length, 1); // one information request:
  view.setUint16(6 + name.length, Info.BLOCK_SIZE); // we honour block sizes
  await sendOption(conn, Opt.GO, bytes);
  let sized = false;
  for (;;) {
    const r = await readReply(reader, Opt.GO);
    if (r.type === Rep.ACK) break;
    if (r.type === Rep.ERR_UNSUP) return undefined;
    if (isError(r.type)) throw refusal(r, "NBD_OPT_GO", exportName);
    if (r.type !== Rep.INFO || r.data.length < 2) continue;
    const d = new DataView(r.data.buffer);
    const kind = d.getUint16(0);
    if (kind === Info.EXPORT && r.data.length >= 12) {
      info.size = d.getBigUint64(2);
      info.flags = d.getUint16(10);
      sized = true;
    } else if (kind === Info.BLOCK_SIZE && r.data.length >= 14) {
      const min = d.getUint32(2);
      const preferred = d.getUint32(6);
      const max = d.getUint32(10);
      // The spec's constraints; a server that breaks them is ignored rather than obeyed.
      if (
        isPowerOfTwo(min) && min <= 65536 && isPowerOfTwo(preferred) && preferred >= min &&
        max >= min && (max === 0xffffffff || max % min === 0)
      ) {
        info.minBlock = min;
        info.preferredBlock = Math.max(preferred, 512);
        info.maxBlock = max;
      }
    }
  }
  if (!sized) throw new HandshakeError("EPROTO", "the server did not give the export size");
  return info;
}

/** `NBD_OPT_EXPORT_NAME`, for servers without `NBD_OPT_GO`. */
async function exportName(
  conn: Deno.Conn,
  reader: Reader,
  name: Uint8Array,
  zeroes: boolean,
  info: ExportInfo,
): Promise<ExportInfo> {
  const out = new Uint8Array(16 + name.length);
  const h = new DataView(out.buffer);
  h.setBigUint64(0, Magic.IHAVEOPT);
  h.setUint32(8, Opt.EXPORT_NAME);
  h.setUint32(12, name.length);
  out.set(name, 16);
  await writeAll(conn, out);
  // No error reply exists: a server without the export just closes the connection.
  await reader.fill(10);
  const at = reader.take(10);
  info.size = reader.view.getBigUint64(at);
  info.flags = reader.view.getUint16(at + 8);
  if (zeroes) await reader.skip(124);
  return info;
}

/**
 * Runs the handshake on a fresh connection.
 *
 * @param conn The connection.
 * @param reader Its reader.
 * @param name The export name.
 * @param tls Upgrade to TLS first (`NBD_OPT_STARTTLS`), checking the server's certificate.
 * @returns The connection to use from now on (TLS replaces it), and what the server said.
 * @throws {HandshakeError} When the server is not a fixed-newstyle NBD server or refuses.
 * @example
 * ```ts ignore
 * const conn = await Deno.connect({ transport: "unix", path: "/tmp/nbd.sock" });
 * const { info } = await handshake(conn, new Reader(conn), "");
 * console.log(info.size);
 * ```
 */
export async function handshake(
  conn: Deno.Conn,
  reader: Reader,
  name: string,
  tls?: TlsOptions,
): Promise<Negotiated> {
  await reader.fill(18);
  const v = reader.view;
  const at = reader.take(18);
  if (v.getBigUint64(at) !== Magic.NBDMAGIC || v.getBigUint64(at + 8) !== Magic.IHAVEOPT) {
    throw new HandshakeError("EPROTO", "not a newstyle NBD server (bad greeting)");
  }
  const serverFlags = v.getUint16(at + 16);
  if (!(serverFlags & Handshake.FIXED_NEWSTYLE)) {
    throw new HandshakeError("EPROTO", "the NBD server does not speak fixed newstyle");
  }
  const noZeroes = (serverFlags & Handshake.NO_ZEROES) !== 0;
  const clientFlags = new Uint8Array(4);
  new DataView(clientFlags.buffer).setUint32(
    0,
    Handshake.FIXED_NEWSTYLE | (noZeroes ? Handshake.NO_ZEROES : 0),
  );
  await writeAll(conn, clientFlags);
  if (tls) ({ conn, reader } = await startTls(conn, reader, tls));

  const bytes = enc.encode(name);
  const structured = await structuredReplies(conn, reader);
  const info: ExportInfo = {
    size: 0n,
    flags: 0,
    minBlock: 1,
    preferredBlock: 4096,
    maxBlock: 32 << 20,
    structured,
    allocationContext: structured ? await allocationContext(conn, reader, bytes, name) : undefined,
  };
  const done = await go(conn, reader, bytes, name, info) ??
    await exportName(conn, reader, bytes, !noZeroes, info);
  return { conn, reader, info: done };
}
