/**
 * Opening one connection to an export: the socket (TCP or Unix), the handshake, a deadline
 * over both, and one clear {@linkcode DeviceError} for whatever went wrong.
 *
 * @module
 */
import { DeviceError } from "../device_error.ts";
import { type ExportInfo, handshake, HandshakeError, type TlsOptions } from "./handshake.ts";
import type { NbdAddress } from "./uri.ts";
import { ConnectionClosed, Reader } from "./wire.ts";

/** A handshaken socket, ready for the transmission phase. */
export interface Handshaken {
  /** The socket. */
  conn: Deno.Conn;
  /** Its reader (which may hold bytes already). */
  reader: Reader;
  /** What the server said about the export. */
  info: ExportInfo;
}

class Deadline extends Error {}

function describe(uri: string, addr: NbdAddress, err: unknown): DeviceError {
  const e = err as Error;
  let code = "EIO";
  let why = e?.message ?? String(err);
  const where = addr.socket ? `"${addr.socket}"` : `${addr.hostname} port ${addr.port}`;
  if (err instanceof Deadline) {
    code = "ETIMEDOUT";
    why = `no answer from ${where} within ${e.message} ms`;
  } else if (e instanceof Deno.errors.ConnectionRefused) {
    code = "ECONNREFUSED";
    why = `connection refused by ${where}: is the NBD server running and listening there?`;
  } else if (!addr.socket && /lookup address|name or service|nodename/i.test(why)) {
    code = "EHOSTUNREACH";
    why = `cannot resolve host "${addr.hostname}"`;
  } else if (e instanceof Deno.errors.NotFound) {
    code = "ENOENT";
    why = addr.socket ? `no such socket ${where}` : `cannot resolve host "${addr.hostname}"`;
  } else if (e instanceof Deno.errors.TimedOut) {
    code = "ETIMEDOUT";
    why = `connecting to ${where} timed out`;
  } else if (e instanceof Deno.errors.PermissionDenied) {
    code = "EACCES";
    why = `permission denied connecting to ${where}`;
  } else if (e instanceof HandshakeError) {
    code = e.code;
  } else if (e instanceof ConnectionClosed || e instanceof Deno.errors.ConnectionReset) {
    code = "ECONNRESET";
    why = `${where} closed the connection during the handshake`;
  }
  const out = new DeviceError(uri, code, `Cannot open NBD export "${uri}": ${why} (${code})`);
  out.cause = err;
  return out;
}

/**
 * Connects and runs the handshake, all within `timeoutMs`.
 *
 * @param uri The URI as given (for messages).
 * @param addr Where the export is.
 * @param timeoutMs Deadline for the socket and the handshake together.
 * @param tls TLS settings (for `nbds://`).
 * @returns The handshaken connection.
 * @throws {DeviceError} ECONNREFUSED, ENOENT, ETIMEDOUT, ENXIO (unknown export), EACCES, …
 * @example
 * ```ts ignore
 * const { conn, info } = await connectExport(uri, parseNbdUri(uri), 10_000);
 * console.log(info.size);
 * ```
 */
export async function connectExport(
  uri: string,
  addr: NbdAddress,
  timeoutMs: number,
  tls?: TlsOptions,
): Promise<Handshaken> {
  const abort = new AbortController();
  let conn: Deno.Conn | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      try {
        conn?.close(); // wakes a handshake read that waits for a silent server
      } catch { /* closed */ }
      conn = undefined;
      reject(new Deadline(String(timeoutMs)));
    }, timeoutMs);
  });
  const work = (async () => {
    const c = addr.socket
      ? await Deno.connect({ transport: "unix", path: addr.socket })
      : await Deno.connect({ hostname: addr.hostname!, port: addr.port!, signal: abort.signal });
    if (abort.signal.aborted) {
      c.close();
      throw new Deadline(String(timeoutMs));
    }
    conn = c;
    const done = await handshake(c, new Reader(c), addr.exportName, tls);
    conn = done.conn; // TLS replaced it
    if (abort.signal.aborted) {
      done.conn.close();
      throw new Deadline(String(timeoutMs));
    }
    return done;
  })();
  try {
    return await Promise.race([work, deadline]);
  } catch (err) {
    try {
      conn?.close();
    } catch { /* closed */ }
    work.catch(() => {}); // it fails too once its socket is closed
    throw err instanceof DeviceError ? err : describe(uri, addr, err);
  } finally {
    clearTimeout(timer);
  }
}
