/**
 * The fixed-newstyle handshake: structured replies, the `base:allocation` meta context, and
 * `NBD_OPT_GO` with block-size information.
 *
 * @module
 */
import { Handshake, Info, Magic, Opt, Rep } from "./protocol.ts";
import { type Reader, writeAll } from "./wire.ts";

/** What the server told us about the export. */
export interface ExportInfo {
  size: bigint;
  flags: number;
  minBlock: number;
  preferredBlock: number;
  maxBlock: number;
  structured: boolean;
  /** Context id of `base:allocation`, if the server offers it. */
  allocationContext?: number;
}

/** The server refused an option; `code` is a short errno-like name. */
export class HandshakeError extends Error {
  /** e.g. `"ENXIO"` for an unknown export. */
  readonly code: string;
  /**
   * Creates the error.
   *
   * @param code A short errno-like name.
   * @param message What happened.
   */
  constructor(code: string, message: string) {
    super(message);
    this.name = "HandshakeError";
    this.code = code;
  }
}

const enc = new TextEncoder();

async function sendOption(conn: Deno.Conn, opt: number, data: Uint8Array): Promise<void> {
  const h = new DataView(new ArrayBuffer(16));
  h.setBigUint64(0, Magic.IHAVEOPT);
  h.setUint32(8, opt);
  h.setUint32(12, data.length);
  await writeAll(conn, new Uint8Array(h.buffer), data);
}

interface OptReply {
  type: number;
  data: Uint8Array;
}

async function readReply(reader: Reader, opt: number): Promise<OptReply> {
  await reader.fill(20);
  const v = reader.view;
  const at = reader.take(20);
  if (v.getBigUint64(at) !== Magic.OPT_REPLY) {
    throw new HandshakeError("EPROTO", "NBD server sent a bad option reply magic");
  }
  if (v.getUint32(at + 8) !== opt) {
    throw new HandshakeError(
      "EPROTO",
      `NBD server replied to option ${v.getUint32(at + 8)}, not ${opt}`,
    );
  }
  const type = v.getUint32(at + 12);
  const len = v.getUint32(at + 16);
  if (len > 1 << 20) throw new HandshakeError("EPROTO", `NBD option reply too long: ${len}`);
  return { type, data: await reader.bytes(len) };
}

function refusal(type: number, what: string, name: string, data: Uint8Array): HandshakeError {
  const msg = new TextDecoder().decode(data);
  const detail = msg ? `: ${msg}` : "";
  switch (type) {
    case Rep.ERR_UNKNOWN:
      return new HandshakeError("ENXIO", `the server has no export named "${name}"${detail}`);
    case Rep.ERR_TLS_REQD:
      return new HandshakeError("EACCES", `the server requires TLS${detail}`);
    case Rep.ERR_POLICY:
      return new HandshakeError("EACCES", `the server refused ${what} by policy${detail}`);
    case Rep.ERR_SHUTDOWN:
      return new HandshakeError("ESHUTDOWN", `the server is shutting down${detail}`);
    default:
      return new HandshakeError(
        "EPROTO",
        `the server refused ${what} (reply ${type >>> 0})${detail}`,
      );
  }
}

/**
 * Runs the handshake on a fresh connection.
 *
 * @param conn The connection.
 * @param reader Its reader.
 * @param exportName The export.
 * @returns What the server said about the export.
 * @throws {HandshakeError} When the server is not a fixed-newstyle NBD server or refuses.
 */
export async function handshake(
  conn: Deno.Conn,
  reader: Reader,
  exportName: string,
): Promise<ExportInfo> {
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
  const clientFlags = new DataView(new ArrayBuffer(4));
  clientFlags.setUint32(0, Handshake.FIXED_NEWSTYLE | (serverFlags & Handshake.NO_ZEROES));
  await writeAll(conn, new Uint8Array(clientFlags.buffer));

  await sendOption(conn, Opt.STRUCTURED_REPLY, new Uint8Array(0));
  const sr = await readReply(reader, Opt.STRUCTURED_REPLY);
  const structured = sr.type === Rep.ACK;

  const name = enc.encode(exportName);
  let allocationContext: number | undefined;
  if (structured) {
    const query = enc.encode("base:allocation");
    const d = new DataView(new ArrayBuffer(4 + name.length + 4 + 4 + query.length));
    d.setUint32(0, name.length);
    new Uint8Array(d.buffer).set(name, 4);
    d.setUint32(4 + name.length, 1);
    d.setUint32(8 + name.length, query.length);
    new Uint8Array(d.buffer).set(query, 12 + name.length);
    await sendOption(conn, Opt.SET_META_CONTEXT, new Uint8Array(d.buffer));
    for (;;) {
      const r = await readReply(reader, Opt.SET_META_CONTEXT);
      if (r.type === Rep.META_CONTEXT && r.data.length >= 4) {
        allocationContext = new DataView(r.data.buffer).getUint32(0);
      } else if (r.type === Rep.ACK || r.type >= 0x80000000) {
        if (r.type === Rep.ERR_UNKNOWN) throw refusal(r.type, "the export", exportName, r.data);
        break;
      }
    }
  }

  const go = new DataView(new ArrayBuffer(4 + name.length + 2 + 2));
  go.setUint32(0, name.length);
  new Uint8Array(go.buffer).set(name, 4);
  go.setUint16(4 + name.length, 1);
  go.setUint16(6 + name.length, Info.BLOCK_SIZE);
  await sendOption(conn, Opt.GO, new Uint8Array(go.buffer));
  const info: ExportInfo = {
    size: 0n,
    flags: 0,
    minBlock: 1,
    preferredBlock: 4096,
    maxBlock: 32 << 20,
    structured,
    allocationContext,
  };
  for (;;) {
    const r = await readReply(reader, Opt.GO);
    if (r.type === Rep.ACK) break;
    if (r.type >= 0x80000000) throw refusal(r.type, "NBD_OPT_GO", exportName, r.data);
    if (r.type !== Rep.INFO || r.data.length < 2) continue;
    const d = new DataView(r.data.buffer);
    const kind = d.getUint16(0);
    if (kind === Info.EXPORT && r.data.length >= 12) {
      info.size = d.getBigUint64(2);
      info.flags = d.getUint16(10);
    } else if (kind === Info.BLOCK_SIZE && r.data.length >= 14) {
      info.minBlock = d.getUint32(2);
      info.preferredBlock = d.getUint32(6);
      info.maxBlock = d.getUint32(10);
    }
  }
  return info;
}
