/**
 * The public shapes of the kcopyd client: regions, flags, options and results.
 *
 * @module
 */
import type { BlockDevice } from "./block_device.ts";
import type { Throttle } from "./throttle.ts";

/** Job flags, as in the kernel's `dm-kcopyd`; combine with `|`. */
export const KcopydFlags = {
  /** Attempt every chunk despite errors; unreadable sectors are written as zeros. */
  IGNORE_ERROR: 1 << 0,
  /** Writes reach each destination in ascending order, one at a time (cancels IGNORE_ERROR). */
  WRITE_SEQ: 1 << 1,
} as const;

/** A 64-bit sector quantity: a `bigint`, or a safe-integer `number`. */
export type SectorValue = bigint | number;

/** A range of 512-byte sectors on a device (the kernel's `dm_io_region`). */
export interface IoRegion {
  /** The device, from `openDevice()`. */
  device: BlockDevice;
  /** First sector (512-byte units). */
  sector: SectorValue;
  /** Number of sectors. On a copy destination it may be omitted: it takes the source's. */
  count?: SectorValue;
}

/** One failure: where it is and what the system said. */
export interface CopyErrorEntry {
  /** Index of the destination for a write error; absent for a read error. */
  dest?: number;
  /** Absolute sector on the device where the failure is. */
  sector: bigint;
  /** Sectors affected. */
  count: bigint;
  /** Errno name, e.g. `"EIO"`, `"ENOSPC"`. */
  code: string;
}

/** The outcome of a job. I/O errors are reported here, never by rejecting. */
export interface CopyResult {
  /** True when reading the source failed somewhere. */
  readErr: boolean;
  /** Bit i set when writing destination i failed somewhere. */
  writeErr: number;
  /** Every failure, with its absolute sectors. */
  errors: CopyErrorEntry[];
}

/** The kernel's `kcopyd_notify_fn(read_err, write_err, context)`. */
export type NotifyFn<C = unknown> = (readErr: boolean, writeErr: number, context: C) => void;

/** Options for one job. */
export interface JobOptions<C = unknown> {
  /** {@linkcode KcopydFlags} bits. */
  flags?: number;
  /** Called once, from the event loop, before the job's promise resolves. */
  notify?: NotifyFn<C>;
  /** Passed to `notify`. */
  context?: C;
  /** Make every destination durable (fsync / flush) before completion is reported. */
  flush?: boolean;
}

/** Options for `KcopydClient.create`. */
export interface ClientOptions {
  /** 4 KiB pages set aside for data (the pool). Default 4096 (16 MiB). */
  pages?: number;
  /** Bytes per sub-job (chunk), a multiple of 4096. Default 1048576 (1 MiB). */
  subJobSize?: number;
  /** Sub-jobs of one job that run in parallel. Default 8. */
  splitCount?: number;
  /** Most destinations per job, 1 to 32. Default 8. */
  maxDestinations?: number;
  /** Busy-time percentage (100 = off), or a shared {@linkcode Throttle}. */
  throttle?: number | Throttle;
  /** io_uring SQ entries. Default 256. */
  ringEntries?: number;
  /** Most operations in flight on the ring (CQ size). Default 4096. */
  queueDepth?: number;
  /** Register the pool with the ring and use fixed-buffer reads and writes. Default true. */
  fixedBuffers?: boolean;
  /** Completions to wait for at once (see `RingOptions.waitBatch`). Default 1. */
  waitBatch?: number;
  /**
   * `"worker"` (default) waits for completions off the JS thread; `"inline"` waits on it in
   * short bounded slices, faster for programs with nothing else to do (see `RingOptions`).
   */
  waitMode?: "worker" | "inline";
}
