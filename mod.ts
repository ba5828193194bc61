/**
 * kcopyd for Deno: copy ranges of 512-byte sectors from one block device or image file to
 * several others, and zero ranges, asynchronously, with the semantics of Linux's
 * `dm-kcopyd`, on io_uring.
 *
 * @example
 * ```ts ignore
 * import { KcopydClient, KcopydFlags, openDevice } from "@kcopyd/kcopyd";
 * const src = await openDevice("/dev/loop0");
 * const dst = await openDevice("/dev/loop1", { write: true });
 * await using kc = await KcopydClient.create({ pages: 256 });
 * const r = await kc.copy(
 *   { device: src, sector: 0n, count: 2048n },
 *   [{ device: dst, sector: 4096n, count: 2048n }],
 *   { flags: KcopydFlags.IGNORE_ERROR },
 * );
 * console.log(r.readErr, r.writeErr, r.errors);
 * ```
 *
 * @module
 */
export { KcopydClient } from "./lib/client.ts";
export { Device, DeviceError, openDevice } from "./lib/device.ts";
export type { OpenDeviceOptions } from "./lib/device.ts";
export { NbdDevice, openNbd } from "./lib/nbd/device.ts";
export type { NbdExtent, NbdFeatures, NbdOpenOptions } from "./lib/nbd/device.ts";
export type { BlockDevice } from "./lib/block_device.ts";
export type { Endpoint } from "./lib/endpoint.ts";
export { Throttle } from "./lib/throttle.ts";
export type { ThrottleOptions } from "./lib/throttle.ts";
export { KcopydFlags } from "./lib/types.ts";
export type {
  ClientOptions,
  CopyErrorEntry,
  CopyResult,
  IoRegion,
  JobOptions,
  NotifyFn,
  SectorValue,
} from "./lib/types.ts";
export { UringError } from "./lib/uring_error.ts";
export { LiburingLoadError } from "./ffi/liburing.ts";
