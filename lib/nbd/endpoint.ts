/**
 * The copy engine's view of an NBD export: reads and writes on native memory (the client's
 * page pool), zeroing with `NBD_CMD_WRITE_ZEROES`, and flush. The ring is not used: requests
 * travel over the device's sockets.
 *
 * @module
 */
import type { Endpoint } from "../endpoint.ts";
import { nativeView } from "../native.ts";
import type { NbdDevice } from "./device.ts";

/** Views kept per endpoint before the cache starts over. */
const MAX_VIEWS = 4096;

/**
 * An {@linkcode Endpoint} over an {@linkcode NbdDevice}.
 *
 * @example
 * ```ts ignore
 * const ep = nbd.endpoint();
 * const res = await ep.read(pool.address, 65536, 0); // 65536 or -errno
 * ```
 */
export class NbdEndpoint implements Endpoint {
  readonly #device: NbdDevice;
  /** Views over native memory by address: the pool hands out the same runs again and again. */
  readonly #views = new Map<number, Uint8Array>();

  /**
   * Binds the engine to a device.
   *
   * @param device The export.
   */
  constructor(device: NbdDevice) {
    this.#device = device;
  }

  #view(address: number, length: number): Uint8Array {
    let v = this.#views.get(address);
    if (v === undefined || v.length < length) {
      if (this.#views.size >= MAX_VIEWS) this.#views.clear();
      v = new Uint8Array(nativeView(address, length));
      this.#views.set(address, v);
    }
    return v.length === length ? v : v.subarray(0, length);
  }

  /**
   * Reads `length` bytes at byte `offset` into native memory.
   *
   * @param address Native address.
   * @param length Bytes.
   * @param offset Byte offset in the export.
   * @returns Bytes read or a negative errno.
   */
  read(address: number, length: number, offset: number): Promise<number> {
    return this.#device.pread(this.#view(address, length), offset);
  }

  /**
   * Writes `length` bytes from native memory at byte `offset`.
   *
   * @param address Native address.
   * @param length Bytes.
   * @param offset Byte offset in the export.
   * @returns Bytes written or a negative errno.
   */
  write(address: number, length: number, offset: number): Promise<number> {
    return this.#device.pwrite(this.#view(address, length), offset);
  }

  /**
   * Callback form of {@linkcode NbdEndpoint.read}.
   *
   * @param address Native address.
   * @param length Bytes.
   * @param offset Byte offset in the export.
   * @param done Gets bytes read or a negative errno.
   */
  readCb(address: number, length: number, offset: number, done: (res: number) => void): void {
    this.#device.preadCb(this.#view(address, length), offset, done);
  }

  /**
   * Callback form of {@linkcode NbdEndpoint.write}.
   *
   * @param address Native address.
   * @param length Bytes.
   * @param offset Byte offset in the export.
   * @param done Gets bytes written or a negative errno.
   */
  writeCb(address: number, length: number, offset: number, done: (res: number) => void): void {
    this.#device.pwriteCb(this.#view(address, length), offset, done);
  }

  /**
   * `NBD_CMD_WRITE_ZEROES`: the server zeroes the range without the data crossing the network.
   *
   * @param offset Byte offset.
   * @param length Bytes.
   * @returns Bytes zeroed, -EOPNOTSUPP when the server cannot, or another negative errno.
   */
  zero(offset: number, length: number): Promise<number> {
    return this.#device.zero(offset, length);
  }

  /**
   * `NBD_CMD_FLUSH` once every write sent before it has been answered.
   *
   * @returns 0 or a negative errno.
   */
  flush(): Promise<number> {
    return this.#device.flush();
  }
}
