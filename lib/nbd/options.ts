/**
 * Option haggling: sending one `NBD_OPT_*` and reading its replies, and turning a refusal into
 * a {@linkcode HandshakeError} with an errno-like code.
 *
 * @module
 */
import { Magic, Rep } from "./protocol.ts";
import { type Reader, writeAll } from "./wire.ts";

/** The server refused an option, or is not an NBD server we can talk to. */
export class HandshakeError extends Error {
  /** An errno-like name: `"ENXIO"` for an unknown export, `"EPROTO"` for a protocol error. */
  readonly code: string;
  /**
   * Creates the error.
   *
   * @param code An errno-like name.
   * @param message What happened.
   */
  constructor(code: string, message: string) {
    super(message);
    this.name = "HandshakeError";
    this.code = code;
  }
}

/** One option reply. */
export interface OptReply {
  /** `NBD_REP_*`. */
  type: number;
  /** Its data. */
  data: Uint8Array;
}

/**
 * Sends `NBD_OPT_*` with its data.
 *
 * @param conn The connection.
 * @param opt The option.
 * @param data Its data.
 */
export async function sendOption(conn: Deno.Conn, opt: number, data: Uint8Array): Promise<void> {
  const out = new Uint8Array(16 + data.length);
  const h = new DataView(out.buffer);
  h.setBigUint64(0, Magic.IHAVEOPT);
  h.setUint32(8, opt);
  h.setUint32(12, data.length);
  out.set(data, 16);
  await writeAll(conn, out);
}

/**
 * Reads one reply to `opt`.
 *
 * @param reader The connection's reader.
 * @param opt The option it answers.
 * @returns The reply.
 * @throws {HandshakeError} EPROTO for a malformed reply.
 */
export async function readReply(reader: Reader, opt: number): Promise<OptReply> {
  await reader.fill(20);
  const v = reader.view;
  const at = reader.take(20);
  if (v.getBigUint64(at) !== Magic.OPT_REPLY) {
    throw new HandshakeError("EPROTO", "the NBD server sent a bad option reply magic");
  }
  const to = v.getUint32(at + 8);
  const type = v.getUint32(at + 12);
  const len = v.getUint32(at + 16);
  if (to !== opt) {
    throw new HandshakeError("EPROTO", `the NBD server answered option ${to}, not ${opt}`);
  }
  if (len > 1 << 20) throw new HandshakeError("EPROTO", `NBD option reply too long: ${len}`);
  return { type, data: await reader.bytes(len) };
}

/**
 * True for error replies (`NBD_REP_ERR_*`).
 *
 * @param type A reply type.
 * @returns Whether the high bit is set.
 */
export function isError(type: number): boolean {
  return type >= 0x80000000;
}

/**
 * The error for a refused option.
 *
 * @param reply The error reply.
 * @param what The option, for the message (e.g. `"NBD_OPT_GO"`).
 * @param name The export name.
 * @returns The error (with the server's message, if any, after a colon).
 */
export function refusal(reply: OptReply, what: string, name: string): HandshakeError {
  const msg = new TextDecoder().decode(reply.data).trim();
  const detail = msg ? `: ${msg}` : "";
  switch (reply.type) {
    case Rep.ERR_UNKNOWN:
      return new HandshakeError("ENXIO", `the server has no export named "${name}"${detail}`);
    case Rep.ERR_TLS_REQD:
      return new HandshakeError(
        "EACCES",
        `the server requires TLS (use nbds:// with its CA certificate)${detail}`,
      );
    case Rep.ERR_POLICY:
      return new HandshakeError("EACCES", `the server refused ${what} by policy${detail}`);
    case Rep.ERR_SHUTDOWN:
      return new HandshakeError("ESHUTDOWN", `the server is shutting down${detail}`);
    case Rep.ERR_UNSUP:
      return new HandshakeError("EOPNOTSUPP", `the server does not support ${what}${detail}`);
    default:
      return new HandshakeError(
        "EPROTO",
        `the server refused ${what} (reply 0x${reply.type.toString(16)})${detail}`,
      );
  }
}
