/**
 * The interface every kind of device shares: local block devices and image files, and remote
 * exports. The copy engine sees only this and an {@linkcode Endpoint} per device.
 *
 * @module
 */
import type { Endpoint } from "./endpoint.ts";
import type { Ring } from "./ring.ts";

/** A device that kcopyd regions can live on. */
export interface BlockDevice extends AsyncDisposable {
  /** `"local"` for block devices and files, `"nbd"` for NBD exports. */
  readonly kind: string;
  /** The path or URI as given. */
  readonly path: string;
  /** Size in bytes. */
  readonly sizeBytes: bigint;
  /** Size in whole 512-byte sectors. */
  readonly sizeSectors: bigint;
  /** Smallest I/O unit the device accepts, in bytes. */
  readonly logicalBlockSize: number;
  /** Preferred I/O unit in bytes. */
  readonly physicalBlockSize: number;
  /** True for a block device (or a remote export), false for a regular file. */
  readonly isBlockDevice: boolean;
  /** Opened for writing. */
  readonly writable: boolean;
  /** I/O bypasses the page cache (O_DIRECT for local devices). */
  readonly direct: boolean;
  /** Identity of the storage, for overlap checks: equal ids mean the same bytes. */
  readonly id: string;
  /** True after `close()`. */
  readonly closed: boolean;
  /** Releases the device. Safe to call twice. */
  close(): Promise<void>;
  /**
   * The device's I/O operations for one client. Local devices run on the client's ring;
   * remote ones bring their own transport and may ignore it.
   */
  endpoint(ring: Ring, fixed?: { start: number; end: number }): Endpoint;
}
