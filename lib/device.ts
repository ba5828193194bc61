/**
 * Local block devices and image files: open with O_DIRECT (falling back when the filesystem
 * refuses it) and O_EXCL for writable block devices, and read their geometry.
 *
 * @module
 */
import { cString, errno, Ioctl, libc, O, S, STAT, strerror } from "../ffi/libc.ts";
import type { BlockDevice } from "./block_device.ts";
import { type Endpoint, LocalEndpoint } from "./endpoint.ts";
import { DeviceError } from "./device_error.ts";
import { errnoName } from "./errno.ts";
import { type NbdDevice, type NbdOpenOptions, openNbd } from "./nbd/device.ts";
import { isNbdUri } from "./nbd/uri.ts";

export { DeviceError };
import type { Ring } from "./ring.ts";

/** Options for {@linkcode openDevice}; the NBD ones apply to `nbd://` URIs only. */
export interface OpenDeviceOptions extends Omit<NbdOpenOptions, "write"> {
  /** Open for writing too (default false: read-only). */
  write?: boolean;
  /** Use O_DIRECT where the filesystem supports it (default true). */
  direct?: boolean;
  /**
   * Open a block device with O_EXCL, so that a mounted or otherwise claimed device is refused
   * (default: true when writing to a block device). Ignored for regular files.
   */
  exclusive?: boolean;
}

/**
 * A local block device or regular file, open for I/O through a ring.
 *
 * @example
 * ```ts ignore
 * await using dev = await openDevice("/dev/loop0");
 * console.log(dev.sizeSectors, dev.logicalBlockSize, dev.direct);
 * ```
 */
export class Device implements BlockDevice {
  /** Always `"local"` (remote backends have their own kinds). */
  readonly kind = "local" as const;
  /** The path as given. */
  readonly path: string;
  /** The file descriptor (valid until `close()`). */
  readonly fd: number;
  /** Size in bytes. */
  readonly sizeBytes: bigint;
  /** Size in whole 512-byte sectors. */
  readonly sizeSectors: bigint;
  /** Logical block size: the smallest I/O the device accepts with O_DIRECT. */
  readonly logicalBlockSize: number;
  /** Physical block size (for files: the filesystem's preferred I/O size). */
  readonly physicalBlockSize: number;
  /** True for a block device, false for a regular file. */
  readonly isBlockDevice: boolean;
  /** Opened for writing. */
  readonly writable: boolean;
  /** O_DIRECT is in effect. */
  readonly direct: boolean;
  /** Why O_DIRECT is not in effect although it was asked for, if so. */
  readonly directFallback: string | undefined;
  /** Opened with O_EXCL. */
  readonly exclusive: boolean;
  /**
   * What the data lives on, for overlap checks: the device number for block devices,
   * device and inode for files. Equal ids mean the same storage, whatever the path.
   */
  readonly id: string;
  #closed = false;

  /**
   * Wraps an open descriptor; use {@linkcode openDevice} instead.
   *
   * @param init What `openDevice` learned about the device.
   */
  constructor(init: {
    path: string;
    fd: number;
    sizeBytes: bigint;
    logicalBlockSize: number;
    physicalBlockSize: number;
    isBlockDevice: boolean;
    writable: boolean;
    direct: boolean;
    directFallback?: string;
    exclusive: boolean;
    id: string;
  }) {
    this.path = init.path;
    this.fd = init.fd;
    this.sizeBytes = init.sizeBytes;
    this.sizeSectors = init.sizeBytes / 512n;
    this.logicalBlockSize = init.logicalBlockSize;
    this.physicalBlockSize = init.physicalBlockSize;
    this.isBlockDevice = init.isBlockDevice;
    this.writable = init.writable;
    this.direct = init.direct;
    this.directFallback = init.directFallback;
    this.exclusive = init.exclusive;
    this.id = init.id;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * I/O on this device through a ring (fixed-buffer I/O inside `fixed`).
   *
   * @param ring The client's ring.
   * @param fixed The address range of the ring's registered buffer 0, if any.
   * @returns The endpoint.
   */
  endpoint(ring: Ring, fixed?: { start: number; end: number }): Endpoint {
    return new LocalEndpoint(ring, this, fixed);
  }

  /** Closes the file descriptor. Safe to call twice. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      libc().close(this.fd);
    }
    return Promise.resolve();
  }

  /** Same as {@linkcode Device.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function failure(path: string, e: number, what: string): DeviceError {
  const code = errnoName(e);
  let why = `${strerror(e)} (${code})`;
  if (code === "EBUSY") {
    why = "the device is busy: it is mounted or held open exclusively by another program " +
      "(EBUSY); unmount it or stop the holder";
  } else if (code === "ENOENT") {
    why = "no such file or device (ENOENT)";
  } else if (code === "EACCES" || code === "EPERM") {
    why = `permission denied (${code}); run as root or fix the permissions`;
  } else if (code === "EROFS") {
    why = "the device or filesystem is read-only (EROFS)";
  }
  return new DeviceError(path, code, `Cannot open "${path}" ${what}: ${why}`);
}

/**
 * Opens a block device, a regular image file, or an NBD export (`nbd://host[:port]/export`,
 * `nbd+unix:///export?socket=PATH`).
 *
 * @param path A block device (e.g. `/dev/loop0`), a regular file, or an NBD URI.
 * @param options Read-only by default; O_DIRECT by default; O_EXCL for writable block devices.
 * @returns The device; close it with `await dev.close()` or `await using`.
 * @throws {DeviceError} When the path is missing, a directory or another kind of file, busy
 *   (EBUSY under O_EXCL), or not permitted.
 * @example
 * ```ts ignore
 * await using src = await openDevice("/dev/loop0");
 * await using dst = await openDevice("/dev/loop1", { write: true });
 * console.log(src.sizeSectors, dst.exclusive); // e.g. 2048n true
 * ```
 */
export function openDevice(
  path: string,
  options: OpenDeviceOptions = {},
): Promise<Device | NbdDevice> {
  if (typeof path === "string" && isNbdUri(path)) {
    return openNbd(path, options).catch((err) => {
      throw err instanceof TypeError ? new DeviceError(path, "EINVAL", err.message) : err;
    });
  }
  try {
    return Promise.resolve(openDeviceSync(path, options));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Synchronous form of {@linkcode openDevice}, for code that cannot await. */
function openDeviceSync(path: string, options: OpenDeviceOptions): Device {
  if (typeof path !== "string" || path === "") {
    throw new TypeError(`Device path must be a non-empty string: got ${JSON.stringify(path)}`);
  }
  const c = libc();
  const write = options.write ?? false;
  const wantDirect = options.direct ?? true;
  const what = write ? "for writing" : "for reading";
  const cpath = cString(path);

  // Look first (without O_EXCL or O_DIRECT) to learn the kind of file.
  const st = new Uint8Array(STAT.size);
  const probe = c.open(cpath, O.RDONLY | O.CLOEXEC | O.NONBLOCK, 0);
  if (probe < 0) {
    const e = errno();
    if (!(write && (e === 13 || e === 1))) throw failure(path, e, what);
  } else {
    const rc = c.fstat(probe, st);
    const e = errno();
    c.close(probe);
    if (rc < 0) throw failure(path, e, what);
  }
  const sv = new DataView(st.buffer);
  let mode = sv.getUint32(STAT.mode, true);
  const kind = mode & S.IFMT;
  if (probe >= 0) {
    if (kind === S.IFDIR) {
      throw new DeviceError(
        path,
        "EISDIR",
        `Cannot open "${path}" ${what}: it is a directory; give a block device or an image file`,
      );
    }
    if (kind !== S.IFBLK && kind !== S.IFREG) {
      throw new DeviceError(
        path,
        "ENOTBLK",
        `Cannot open "${path}" ${what}: not a block device or regular file`,
      );
    }
  }
  const isBlock = kind === S.IFBLK;
  const exclusive = isBlock && (options.exclusive ?? write);
  const flags = (write ? O.RDWR : O.RDONLY) | O.CLOEXEC | (exclusive ? O.EXCL : 0);
  let direct = wantDirect;
  let directFallback: string | undefined;
  let fd = c.open(cpath, flags | (direct ? O.DIRECT : 0), 0);
  if (fd < 0 && direct && errno() === 22) {
    direct = false;
    directFallback = "the filesystem does not support O_DIRECT (EINVAL); using the page cache";
    fd = c.open(cpath, flags, 0);
  }
  if (fd < 0) throw failure(path, errno(), what);

  if (c.fstat(fd, st) < 0) {
    const e = errno();
    c.close(fd);
    throw failure(path, e, what);
  }
  mode = sv.getUint32(STAT.mode, true);
  let sizeBytes: bigint;
  let logical = 512;
  let physical = Number(sv.getBigInt64(STAT.blksize, true)) || 4096;
  let id: string;
  if ((mode & S.IFMT) === S.IFBLK) {
    const out = new Uint8Array(8);
    const ov = new DataView(out.buffer);
    if (c.ioctl(fd, Ioctl.BLKGETSIZE64, out) < 0) {
      const e = errno();
      c.close(fd);
      throw failure(path, e, what);
    }
    sizeBytes = ov.getBigUint64(0, true);
    if (write && c.ioctl(fd, Ioctl.BLKROGET, out) === 0 && ov.getInt32(0, true) !== 0) {
      c.close(fd);
      throw new DeviceError(
        path,
        "EROFS",
        `Cannot open "${path}" ${what}: the block device is read-only (EROFS); ` +
          `make it writable (e.g. blockdev --setrw) or choose another destination`,
      );
    }
    if (c.ioctl(fd, Ioctl.BLKSSZGET, out) === 0) logical = ov.getInt32(0, true);
    if (c.ioctl(fd, Ioctl.BLKPBSZGET, out) === 0) physical = ov.getUint32(0, true);
    id = `blk:${sv.getBigUint64(STAT.rdev, true)}`;
  } else if ((mode & S.IFMT) === S.IFREG) {
    sizeBytes = sv.getBigInt64(STAT.stSize, true);
    id = `file:${sv.getBigUint64(STAT.dev, true)}:${sv.getBigUint64(STAT.ino, true)}`;
  } else {
    c.close(fd);
    throw new DeviceError(
      path,
      "ENOTBLK",
      `Cannot open "${path}" ${what}: not a block device or regular file`,
    );
  }
  return new Device({
    path,
    fd,
    sizeBytes,
    logicalBlockSize: logical,
    physicalBlockSize: physical,
    isBlockDevice: (mode & S.IFMT) === S.IFBLK,
    writable: write,
    direct,
    directFallback: wantDirect ? directFallback : undefined,
    exclusive,
    id,
  });
}
