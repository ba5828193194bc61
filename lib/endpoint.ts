/**
 * What the copy engine needs from a device: read, write, zero and flush, each resolving with
 * bytes done or a negative errno (never rejecting). The local backend runs them on the
 * client's ring; remote backends implement the same interface in their own files.
 *
 * @module
 */
import { Falloc, Op } from "../ffi/abi.ts";
import { Errno } from "./errno.ts";
import type { Ring } from "./ring.ts";
import { prepFallocate, prepFsync } from "./sqe.ts";

/** Device operations as the copy engine sees them. Offsets and lengths are in bytes. */
export interface Endpoint {
  /** Reads into native memory; resolves with bytes read or -errno. */
  read(address: number, length: number, offset: number): Promise<number>;
  /** Writes from native memory; resolves with bytes written or -errno. */
  write(address: number, length: number, offset: number): Promise<number>;
  /** Zeroes a range without data transfer; -EOPNOTSUPP when the device cannot. */
  zero(offset: number, length: number): Promise<number>;
  /** Makes written data durable; resolves with 0 or -errno. */
  flush(): Promise<number>;
  /** Callback form of `read` for hot paths (no Promise per I/O); optional. */
  readCb?(address: number, length: number, offset: number, done: (res: number) => void): void;
  /** Callback form of `write` for hot paths; optional. */
  writeCb?(address: number, length: number, offset: number, done: (res: number) => void): void;
  /**
   * Reads `length` bytes at `from` into `address`, then writes them to `to` at `at`, chained
   * inside the backend (the write starts only after a full read); `done` receives both results
   * (the write's is -ECANCELED when the read failed or came back short). Optional; returns false,
   * having started nothing, when this backend cannot chain to `to`.
   */
  copyToCb?(
    to: Endpoint,
    address: number,
    length: number,
    from: number,
    at: number,
    done: (readRes: number, writeRes: number) => void,
  ): boolean;
}

/** A local device driven through a ring; fixed-buffer I/O when the pool is registered. */
export class LocalEndpoint implements Endpoint {
  readonly #ring: Ring;
  readonly #fd: number;
  readonly #fixed: { start: number; end: number } | undefined;
  #zeroUnsupported = false;

  /**
   * Binds a device to a ring.
   *
   * @param ring The client's ring.
   * @param device The open device.
   * @param fixed The registered buffer (index 0) range, if any.
   */
  constructor(ring: Ring, device: { fd: number }, fixed?: { start: number; end: number }) {
    this.#ring = ring;
    this.#fd = device.fd;
    this.#fixed = fixed;
  }

  #io(prep: (sqe: import("./sqe.ts").Sqe) => void): Promise<number> {
    return new Promise((resolve) => this.#ring.queue(prep, resolve));
  }

  #isFixed(address: number, length: number): boolean {
    const f = this.#fixed;
    return f !== undefined && address >= f.start && address + length <= f.end;
  }

  read(address: number, length: number, offset: number): Promise<number> {
    return new Promise((resolve) => this.readCb(address, length, offset, resolve));
  }

  readCb(address: number, length: number, offset: number, done: (res: number) => void): void {
    const op = this.#isFixed(address, length) ? Op.READ_FIXED : Op.READ;
    this.#ring.queueRw(op, this.#fd, address, length, offset, 0, done);
  }

  writeCb(address: number, length: number, offset: number, done: (res: number) => void): void {
    const op = this.#isFixed(address, length) ? Op.WRITE_FIXED : Op.WRITE;
    this.#ring.queueRw(op, this.#fd, address, length, offset, 0, done);
  }

  copyToCb(
    to: Endpoint,
    address: number,
    length: number,
    from: number,
    at: number,
    done: (readRes: number, writeRes: number) => void,
  ): boolean {
    if (!(to instanceof LocalEndpoint) || to.#ring !== this.#ring) return false;
    const fixed = this.#isFixed(address, length);
    this.#ring.queueRwLinked(
      {
        op: fixed ? Op.READ_FIXED : Op.READ,
        fd: this.#fd,
        addr: address,
        len: length,
        offset: from,
      },
      { op: fixed ? Op.WRITE_FIXED : Op.WRITE, fd: to.#fd, addr: address, len: length, offset: at },
      done,
    );
    return true;
  }

  write(address: number, length: number, offset: number): Promise<number> {
    return new Promise((resolve) => this.writeCb(address, length, offset, resolve));
  }

  async zero(offset: number, length: number): Promise<number> {
    if (this.#zeroUnsupported) return -Errno.EOPNOTSUPP;
    const fd = this.#fd;
    const mode = Falloc.ZERO_RANGE | Falloc.KEEP_SIZE;
    const res = await this.#io((s) => prepFallocate(s, fd, mode, offset, length));
    if (res === -Errno.EOPNOTSUPP || res === -Errno.EINVAL || res === -38 /* ENOSYS */) {
      this.#zeroUnsupported = true;
      return -Errno.EOPNOTSUPP;
    }
    return res === 0 ? length : res;
  }

  flush(): Promise<number> {
    const fd = this.#fd;
    return this.#io((s) => prepFsync(s, fd));
  }
}
