/**
 * NBD URIs: `nbd://host[:port]/export`, `nbd+unix:///export?socket=PATH`, and with TLS
 * `nbds://host[:port]/export[?tls-certificates=DIR][&tls-hostname=NAME]`.
 *
 * @module
 */

/** Where an export is. */
export interface NbdAddress {
  /** TCP host (IPv6 without brackets), or undefined for a Unix socket. */
  hostname?: string;
  /** TCP port (default 10809). */
  port?: number;
  /** Unix socket path. */
  socket?: string;
  /** Export name ("" for the default export). */
  exportName: string;
  /** `nbds://`: TLS is required. */
  tls?: {
    /** The name the server's certificate must carry (`tls-hostname`, else the host). */
    hostname: string;
    /** `tls-certificates`: a directory whose `ca-cert.pem` signed the server's certificate. */
    certificates?: string;
  };
  /**
   * `nbd:` and the normalized URI (host, port, export; or socket and export): equal for the
   * same export however the URI was written, so overlap checks work.
   */
  id: string;
}

/**
 * True for strings that look like NBD URIs (`nbd://`, `nbds://`, `nbd+unix://`, `nbds+unix://`).
 *
 * @param s A path or URI.
 * @returns Whether it is an NBD URI.
 * @example
 * ```ts
 * import { isNbdUri } from "./uri.ts";
 * console.log(isNbdUri("nbd://host/disk"), isNbdUri("/dev/nbd0")); // true false
 * ```
 */
export function isNbdUri(s: string): boolean {
  return /^nbds?(\+unix)?:\/\//.test(s);
}

/**
 * The normalized id of an export.
 *
 * @param addr Host and port, or socket; and the export name.
 * @returns `nbd:nbd://host:port/export` or `nbd:nbd+unix:///export?socket=PATH`.
 */
export function nbdId(addr: Omit<NbdAddress, "id">): string {
  const name = encodeURIComponent(addr.exportName);
  if (addr.socket !== undefined) return `nbd:nbd+unix:///${name}?socket=${addr.socket}`;
  const host = addr.hostname!.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  return `nbd:nbd://${host}:${addr.port}/${name}`;
}

/**
 * Parses an NBD URI.
 *
 * @param uri The URI.
 * @returns The address.
 * @throws {TypeError} For a malformed URI or an unsupported scheme (TLS).
 * @example
 * ```ts
 * import { parseNbdUri } from "./uri.ts";
 * console.log(parseNbdUri("nbd://Backup/disk").id); // nbd:nbd://backup:10809/disk
 * ```
 */
export function parseNbdUri(uri: string): NbdAddress {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new TypeError(`Not a valid NBD URI: "${uri}" (use nbd://host[:port]/export)`);
  }
  const scheme = url.protocol.replace(/:$/, "");
  if (scheme === "nbds+unix") {
    throw new TypeError(`TLS over a Unix socket is not supported: "${uri}" (use nbds://host)`);
  }
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (scheme === "nbd+unix") {
    if (url.host) throw new TypeError(`NBD URI "${uri}" names a host and a Unix socket`);
    const socket = url.searchParams.get("socket");
    if (!socket) throw new TypeError(`NBD URI "${uri}" needs ?socket=PATH for a Unix socket`);
    return { socket, exportName, id: nbdId({ socket, exportName }) };
  }
  if (scheme !== "nbd" && scheme !== "nbds") throw new TypeError(`Not an NBD URI: "${uri}"`);
  if (!url.hostname) throw new TypeError(`NBD URI "${uri}" has no host`);
  const port = url.port ? Number(url.port) : 10809;
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  // TLS or not, host, port and export name say which bytes these are.
  const addr: NbdAddress = {
    hostname,
    port,
    exportName,
    id: nbdId({ hostname, port, exportName }),
  };
  if (scheme === "nbds") {
    addr.tls = {
      hostname: url.searchParams.get("tls-hostname") ?? hostname,
      certificates: url.searchParams.get("tls-certificates") ?? undefined,
    };
  }
  return addr;
}
