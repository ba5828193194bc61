/**
 * NBD URIs: `nbd://host[:port]/export` and `nbd+unix:///export?socket=PATH`.
 *
 * @module
 */

/** Where an export is. */
export interface NbdAddress {
  /** TCP host, or undefined for a Unix socket. */
  hostname?: string;
  /** TCP port (default 10809). */
  port?: number;
  /** Unix socket path. */
  socket?: string;
  /** Export name ("" for the default export). */
  exportName: string;
  /** A canonical form, equal for the same export: used as the device id. */
  id: string;
}

/** True for strings that look like NBD URIs. */
export function isNbdUri(s: string): boolean {
  return /^nbds?(\+unix)?:\/\//.test(s);
}

/**
 * Parses an NBD URI.
 *
 * @param uri The URI.
 * @returns The address.
 * @throws {TypeError} For a malformed URI or an unsupported scheme (TLS).
 */
export function parseNbdUri(uri: string): NbdAddress {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new TypeError(`Not a valid NBD URI: "${uri}" (use nbd://host[:port]/export)`);
  }
  const scheme = url.protocol.replace(/:$/, "");
  if (scheme === "nbds" || scheme === "nbds+unix") {
    throw new TypeError(`TLS NBD URIs are not supported yet: "${uri}" (use nbd:// or nbd+unix://)`);
  }
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (scheme === "nbd+unix") {
    const socket = url.searchParams.get("socket");
    if (!socket) {
      throw new TypeError(`NBD URI "${uri}" needs ?socket=PATH for a Unix socket`);
    }
    return { socket, exportName, id: `nbd+unix:${socket}/${exportName}` };
  }
  if (scheme !== "nbd") throw new TypeError(`Not an NBD URI: "${uri}"`);
  if (!url.hostname) throw new TypeError(`NBD URI "${uri}" has no host`);
  const port = url.port ? Number(url.port) : 10809;
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  return { hostname, port, exportName, id: `nbd:${hostname}:${port}/${exportName}` };
}
