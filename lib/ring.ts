/**
 * A typed io_uring ring over liburing.
 *
 * SQEs are written and submitted only from the JS thread. While work is outstanding exactly
 * one nonblocking `io_uring_wait_cqes` (no submit inside it) runs on a worker thread; when it
 * returns, every ready CQE is reaped with `io_uring_peek_batch_cqe`, the CQ head is advanced
 * once with `Atomics.store`, and callbacks run. An idle ring has no wait in flight, so it
 * does not keep the process alive.
 *
 * @module
 */
import {
  ASYNC_CANCEL_ANY,
  CQE,
  CQE_SIZE,
  Feature,
  PARAMS,
  PARAMS_SIZE,
  RING,
  SetupFlag,
  SQE,
  SQE_SIZE,
  SqeFlag,
  TIMESPEC_SIZE,
} from "../ffi/abi.ts";
import { type Liburing, liburing } from "../ffi/liburing.ts";
import { Errno } from "./errno.ts";
import { allocNative, freeNative, type NativeBlock, nativeView } from "./native.ts";
import { opName, prepCancelAny, prepRw, type Sqe, sqeOpcode, sqeSetFlags } from "./sqe.ts";
import { UringError } from "./uring_error.ts";
import { setImmediate } from "node:timers";

/** Fills one SQE. Called when the entry is available (at once, or later if the ring is full). */
export type Prep = (sqe: Sqe) => void;
/** Receives a completion: `res` (bytes or a negative errno) and the CQE flags. */
export type Done = (res: number, flags: number) => void;
/** Receives both results of a pair from {@linkcode Ring.queueRwLinked}. */
export type PairDone = (resFirst: number, resSecond: number) => void;

/** One read- or write-shaped operation for {@linkcode Ring.queueRwLinked}. */
export interface RwOp {
  /** An `IORING_OP_*` opcode, e.g. `Op.READ_FIXED`. */
  op: number;
  /** File descriptor. */
  fd: number;
  /** Native address of the buffer. */
  addr: number;
  /** Length in bytes. */
  len: number;
  /** File offset in bytes. */
  offset: number;
  /** Registered buffer index (for the `*_FIXED` opcodes; default 0). */
  bufIndex?: number;
}

/** Options for {@linkcode Ring.create}. */
export interface RingOptions {
  /** SQ entries (rounded up to a power of two by the kernel). Default 256. */
  entries?: number;
  /** CQ entries; also the most operations in flight at once. Default 2 × entries. */
  cqEntries?: number;
  /** Extra `IORING_SETUP_*` flags. */
  flags?: number;
  /**
   * Completions to wait for at once (`wait_nr`), capped by what is in flight. Values above 1
   * use a timeout of `waitTimeoutUs` so a slow tail never stalls. Default 1.
   */
  waitBatch?: number;
  /** Timeout for batched waits in microseconds. Default 200. */
  waitTimeoutUs?: number;
  /**
   * Where to wait for completions. `"worker"` (default): a nonblocking FFI call on a worker
   * thread; the event loop stays free. `"inline"`: a synchronous wait of at most
   * `inlineWaitUs` on the JS thread, then a yield to the event loop. Inline waits cost
   * microseconds instead of tens of microseconds, but block the event loop while they last:
   * for programs that have nothing else to do, such as the CLI.
   */
  waitMode?: "worker" | "inline";
  /** Longest synchronous wait in inline mode, in microseconds. Default 2000. */
  inlineWaitUs?: number;
}

/** Counters for batching: how many syscalls served how many operations. */
export interface RingStats {
  /** Operations completed. */
  completions: number;
  /** `io_uring_submit` calls that submitted at least one SQE. */
  submits: number;
  /** Nonblocking waits that returned. */
  waits: number;
}

interface Queued {
  preps: Prep[];
  dones: Done[];
}

/**
 * An io_uring instance. Create with {@linkcode Ring.create}; close with `await ring.close()`
 * or `await using`.
 *
 * @example
 * ```ts
 * import { prepNop, Ring } from "./uring.ts";
 * await using ring = Ring.create({ entries: 8 });
 * const results = await Promise.all(
 *   Array.from({ length: 100 }, () => ring.run((sqe) => prepNop(sqe))),
 * );
 * console.log(results.length); // 100
 * ```
 */
export class Ring implements AsyncDisposable {
  /** SQ size. */
  readonly entries: number;
  /** CQ size, and the cap on operations in flight. */
  readonly cqEntries: number;
  /** `IORING_FEAT_*` bits reported by the kernel. */
  readonly features: number;
  /** Counters for batching. */
  readonly stats: RingStats = { completions: 0, submits: 0, waits: 0 };

  readonly #lib: Liburing;
  readonly #mem: NativeBlock; // struct io_uring, cqe pointer array, timespec
  readonly #ring: Deno.PointerObject;
  readonly #cqePtrs: Deno.PointerObject;
  readonly #timespec: Deno.PointerObject | null;
  readonly #ringU32: Uint32Array;
  readonly #sqHead: Uint32Array;
  readonly #sqMask: number;
  readonly #cqHead: Uint32Array;
  readonly #cqMask: number;
  readonly #cqes: DataView;
  readonly #sqe: Sqe;
  readonly #waitBatch: number;
  readonly #inlineTs: Deno.PointerObject | null;

  #sqeTail = 0;
  #unsubmitted = 0;
  #used = 0; // tokens in use: prepared or in flight
  readonly #dones: (Done | undefined)[];
  // Linked pairs from queueRwLinked, by token: the other half (-1: not a pair), whether this is
  // the first half, a half's result while it waits for the other, and the pair's callback.
  readonly #partner: Int32Array;
  readonly #pairFirst: Uint8Array;
  readonly #pairSeen: Uint8Array;
  readonly #pairRes: Int32Array;
  readonly #pairDones: (PairDone | undefined)[];
  readonly #free: number[];
  readonly #queue: Queued[] = [];
  #queueHead = 0;
  #flushScheduled = false;
  #pump: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #closed = false;
  #buffersRegistered = false;
  #filesRegistered = false;
  // Scratch space for one reap, reused.
  readonly #resTokens: Uint32Array;
  readonly #resValues: Int32Array;
  readonly #resFlags: Uint32Array;

  private constructor(
    lib: Liburing,
    mem: NativeBlock,
    waitBatch: number,
    timeoutUs: number,
    inlineUs: number | undefined,
  ) {
    this.#lib = lib;
    this.#mem = mem;
    this.#ring = mem.pointer;
    const dv = new DataView(mem.buffer);
    this.#ringU32 = new Uint32Array(mem.buffer, 0, RING.size / 4);
    const ptr = (off: number) => Number(dv.getBigUint64(off, true));
    this.entries = dv.getUint32(RING.sq.ringEntries, true);
    this.cqEntries = dv.getUint32(RING.cq.ringEntries, true);
    this.features = dv.getUint32(RING.features, true);
    this.#sqMask = dv.getUint32(RING.sq.ringMask, true);
    this.#cqMask = dv.getUint32(RING.cq.ringMask, true);
    this.#sqHead = new Uint32Array(nativeView(ptr(RING.sq.khead), 4));
    this.#cqHead = new Uint32Array(nativeView(ptr(RING.cq.khead), 4));
    this.#sqe = {
      view: new DataView(nativeView(ptr(RING.sq.sqes), this.entries * SQE_SIZE)),
      offset: 0,
    };
    this.#cqes = new DataView(nativeView(ptr(RING.cq.cqes), this.cqEntries * CQE_SIZE));
    // SQ slot i always names SQE i (liburing 2.3 sets this too; make it explicit).
    const array = new Uint32Array(nativeView(ptr(RING.sq.array), this.entries * 4));
    for (let i = 0; i < this.entries; i++) array[i] = i;
    this.#sqeTail = dv.getUint32(RING.sq.sqeTail, true);

    const afterRing = RING.size + (8 - (RING.size % 8)) % 8;
    this.#cqePtrs = Deno.UnsafePointer.offset(this.#ring, afterRing)!;
    const tsOff = afterRing + this.cqEntries * 8;
    // Batched waits need a timeout; only safe without a submit inside the wait (EXT_ARG).
    const canTimeout = (this.features & Feature.EXT_ARG) !== 0;
    this.#waitBatch = canTimeout ? Math.max(1, waitBatch) : 1;
    if (canTimeout) {
      dv.setBigInt64(tsOff, BigInt(Math.floor(timeoutUs / 1e6)), true);
      dv.setBigInt64(tsOff + 8, BigInt((timeoutUs % 1e6) * 1000), true);
      this.#timespec = Deno.UnsafePointer.offset(this.#ring, tsOff);
    } else {
      this.#timespec = null;
    }
    if (canTimeout && inlineUs !== undefined) {
      dv.setBigInt64(tsOff + 16, BigInt(Math.floor(inlineUs / 1e6)), true);
      dv.setBigInt64(tsOff + 24, BigInt((inlineUs % 1e6) * 1000), true);
      this.#inlineTs = Deno.UnsafePointer.offset(this.#ring, tsOff + 16);
    } else {
      this.#inlineTs = null;
    }

    this.#dones = new Array(this.cqEntries).fill(undefined);
    this.#partner = new Int32Array(this.cqEntries).fill(-1);
    this.#pairFirst = new Uint8Array(this.cqEntries);
    this.#pairSeen = new Uint8Array(this.cqEntries);
    this.#pairRes = new Int32Array(this.cqEntries);
    this.#pairDones = new Array(this.cqEntries).fill(undefined);
    this.#free = [];
    for (let i = this.cqEntries - 1; i >= 0; i--) this.#free.push(i);
    this.#resTokens = new Uint32Array(this.cqEntries);
    this.#resValues = new Int32Array(this.cqEntries);
    this.#resFlags = new Uint32Array(this.cqEntries);
  }

  /**
   * Sets up a ring with `io_uring_queue_init_params`.
   *
   * @param options Sizes, setup flags and wait batching.
   * @returns The ring.
   * @throws {UringError} When the kernel refuses (e.g. ENOSYS without io_uring, EPERM when
   *   io_uring is disabled by `kernel.io_uring_disabled`).
   * @throws {LiburingLoadError} When liburing is missing.
   */
  static create(options: RingOptions = {}): Ring {
    const lib = liburing();
    const entries = options.entries ?? 256;
    const cqEntries = options.cqEntries ?? entries * 2;
    if (!Number.isInteger(entries) || entries < 1 || entries > 32768) {
      throw new RangeError(`Ring entries must be an integer from 1 to 32768: got ${entries}`);
    }
    if (!Number.isInteger(cqEntries) || cqEntries < entries || cqEntries > 65536) {
      throw new RangeError(
        `Ring cqEntries must be an integer from entries (${entries}) to 65536: got ${cqEntries}`,
      );
    }
    const cqRounded = 2 ** Math.ceil(Math.log2(cqEntries));
    const afterRing = RING.size + (8 - (RING.size % 8)) % 8;
    const mem = allocNative(afterRing + cqRounded * 8 + 2 * TIMESPEC_SIZE + PARAMS_SIZE, 64);
    const paramsOff = afterRing + cqRounded * 8 + 2 * TIMESPEC_SIZE;
    const params = Deno.UnsafePointer.offset(mem.pointer, paramsOff)!;
    const pv = new DataView(mem.buffer, paramsOff, PARAMS_SIZE);
    const base = SetupFlag.CQSIZE | (options.flags ?? 0);
    // Prefer SUBMIT_ALL (5.18+) so one bad SQE never holds back the rest of a batch.
    let rc = 0;
    for (const extra of [SetupFlag.SUBMIT_ALL, 0]) {
      new Uint8Array(mem.buffer, paramsOff, PARAMS_SIZE).fill(0);
      pv.setUint32(PARAMS.cqEntries, cqRounded, true);
      pv.setUint32(PARAMS.flags, base | extra, true);
      rc = lib.io_uring_queue_init_params(entries, mem.pointer, params);
      if (rc !== -Errno.EINVAL) break;
    }
    if (rc < 0) {
      freeNative(mem);
      throw new UringError("io_uring_queue_init", -rc, "Cannot set up an io_uring");
    }
    const mode = options.waitMode ?? "worker";
    if (mode !== "worker" && mode !== "inline") {
      freeNative(mem);
      throw new TypeError(`Ring waitMode must be "worker" or "inline": got ${mode}`);
    }
    return new Ring(
      lib,
      mem,
      options.waitBatch ?? 1,
      options.waitTimeoutUs ?? 200,
      mode === "inline" ? options.inlineWaitUs ?? 2000 : undefined,
    );
  }

  /** Operations prepared or in flight. */
  get inflight(): number {
    return this.#used;
  }

  /** Operations waiting in JS for room in the ring. */
  get queued(): number {
    return this.#queue.length - this.#queueHead;
  }

  /** True after {@linkcode Ring.close} began. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Queues one operation, callback form (for hot paths: no Promise per I/O). `prep` fills the
   * SQE now, or later when the ring has room; `done` runs from the event loop, never inside
   * this call.
   *
   * @param prep Fills the SQE (e.g. `(sqe) => prepRead(sqe, fd, addr, len, off)`).
   * @param done Receives `res` (negative errno on failure) and CQE flags.
   * @throws {Error} When the ring is closed.
   */
  queue(prep: Prep, done: Done): void {
    this.#checkOpen();
    if (this.#queueHead === this.#queue.length && this.#fits(1)) {
      prep(this.#nextSqe());
      this.#placed(done);
    } else {
      this.#queue.push({ preps: [prep], dones: [done] });
    }
    this.#scheduleFlush();
  }

  /**
   * Queues one read- or write-shaped operation without a `Prep` closure (the hottest path):
   * fills the SQE like `prepRw(sqe, op, fd, addr, len, offset)` and sets `buf_index` (for the
   * `*_FIXED` opcodes). `done` runs from the event loop, never inside this call.
   *
   * @param op An `IORING_OP_*` opcode, e.g. `Op.READ_FIXED`.
   * @param fd File descriptor.
   * @param addr Native address of the buffer.
   * @param len Length in bytes.
   * @param offset File offset in bytes.
   * @param bufIndex Registered buffer index (0 when the opcode uses none).
   * @param done Receives `res` and the CQE flags.
   * @throws {Error} When the ring is closed.
   * @example
   * ```ts ignore
   * ring.queueRw(Op.READ, fd, buf.address, 4096, 0, 0, (res) => console.log(res));
   * ```
   */
  queueRw(
    op: number,
    fd: number,
    addr: number,
    len: number,
    offset: number,
    bufIndex: number,
    done: Done,
  ): void {
    this.#checkOpen();
    if (this.#queueHead === this.#queue.length && this.#fits(1)) {
      fillRw(this.#nextSqe(), op, fd, addr, len, offset, bufIndex);
      this.#placed(done);
    } else {
      const prep = (sqe: Sqe) => fillRw(sqe, op, fd, addr, len, offset, bufIndex);
      this.#queue.push({ preps: [prep], dones: [done] });
    }
    this.#scheduleFlush();
  }

  /**
   * Queues two read- or write-shaped operations as one linked chain without `Prep` closures:
   * `second` starts only after `first` completed in full; when `first` fails or comes back short,
   * `second` completes with -ECANCELED. Both are placed in the SQ together, or queue together.
   * `done` runs once, with both results, when both have completed (in whichever order the kernel
   * posts them); the pair costs no allocation in the ring.
   *
   * @param first The first operation (e.g. a read into a buffer).
   * @param second The second (e.g. the write of that buffer).
   * @param done Receives the first's and the second's `res`.
   * @throws {Error} When the ring is closed.
   * @example
   * ```ts ignore
   * const read = { op: Op.READ, fd: src, addr: buf.address, len: 4096, offset: 0 };
   * const write = { op: Op.WRITE, fd: dst, addr: buf.address, len: 4096, offset: 0 };
   * ring.queueRwLinked(read, write, (r, w) => console.log(r, w));
   * ```
   */
  queueRwLinked(first: RwOp, second: RwOp, done: PairDone): void {
    this.#checkOpen();
    if (this.#queueHead === this.#queue.length && this.#fits(2)) {
      const a = this.#placeRw(first, SqeFlag.IO_LINK);
      const b = this.#placeRw(second, 0);
      this.#partner[a] = b;
      this.#partner[b] = a;
      this.#pairFirst[a] = 1;
      this.#pairDones[a] = done;
    } else {
      const prep = (o: RwOp) => (sqe: Sqe) =>
        fillRw(sqe, o.op, o.fd, o.addr, o.len, o.offset, o.bufIndex ?? 0);
      // The slow path (no room): #place links all but the last itself.
      let left = 2;
      let resFirst = 0;
      let resSecond = 0;
      this.#queue.push({
        preps: [prep(first), prep(second)],
        dones: [(r) => {
          resFirst = r;
          if (--left === 0) done(resFirst, resSecond);
        }, (r) => {
          resSecond = r;
          if (--left === 0) done(resFirst, resSecond);
        }],
      });
    }
    this.#scheduleFlush();
  }

  #placeRw(o: RwOp, flags: number): number {
    const sqe = this.#nextSqe();
    fillRw(sqe, o.op, o.fd, o.addr, o.len, o.offset, o.bufIndex ?? 0);
    if (flags) sqeSetFlags(sqe, flags);
    return this.#placed(undefined);
  }

  /**
   * Queues operations as one linked chain (`IOSQE_IO_LINK` on all but the last): each starts
   * after the previous one succeeded; if one fails, the rest complete with -ECANCELED.
   *
   * @param preps Fillers, in order.
   * @param dones One completion callback per filler.
   * @throws {RangeError} When the chain is longer than the ring.
   */
  queueLinked(preps: Prep[], dones: Done[]): void {
    this.#checkOpen();
    if (preps.length !== dones.length || preps.length === 0) {
      throw new RangeError(
        `A linked chain needs one done per prep: got ${preps.length} and ${dones.length}`,
      );
    }
    if (preps.length > this.entries) {
      throw new RangeError(
        `Linked chain of ${preps.length} does not fit a ring of ${this.entries} entries`,
      );
    }
    this.#enqueue({ preps, dones });
  }

  /**
   * Runs one operation and resolves with its result.
   *
   * @param prep Fills the SQE.
   * @returns `res` (e.g. bytes transferred).
   * @throws {UringError} When `res` is negative; `op` names the operation.
   */
  run(prep: Prep): Promise<number> {
    return this.runLinked([prep]).then((r) => r[0]);
  }

  /**
   * Runs a linked chain and resolves with every result.
   *
   * @param preps Fillers, in order.
   * @returns One `res` per operation.
   * @throws {UringError} For the first operation that failed (later ones are canceled).
   */
  runLinked(preps: Prep[]): Promise<number[]> {
    return new Promise<number[]>((resolve, reject) => {
      const results = new Array<number>(preps.length);
      const ops = new Array<number>(preps.length);
      let left = preps.length;
      let failed: UringError | undefined;
      const wrapped = preps.map((prep, i): Prep => (sqe) => {
        prep(sqe);
        ops[i] = sqeOpcode(sqe);
      });
      const dones = preps.map((_, i): Done => (res) => {
        results[i] = res;
        if (res < 0 && !failed && res !== -Errno.ECANCELED) {
          failed = new UringError(opName(ops[i]), -res);
        }
        if (--left > 0) return;
        if (!failed) {
          const c = results.findIndex((r) => r < 0);
          if (c >= 0) failed = new UringError(opName(ops[c]), -results[c]);
        }
        if (failed) reject(failed);
        else resolve(results);
      });
      try {
        this.queueLinked(wrapped, dones);
      } catch (err) {
        reject(err);
      }
    });
  }

  /**
   * Submits every prepared SQE now (normally done once per event-loop turn automatically).
   *
   * @returns The number of SQEs the kernel took.
   */
  submit(): number {
    if (this.#closed) return 0;
    return this.#submitNow();
  }

  /**
   * Registers native buffers for `prepReadFixed`/`prepWriteFixed` (`io_uring_register_buffers`).
   *
   * @param iovecs Native `struct iovec[]` and its length, e.g. `pool.iovecs()`.
   * @throws {UringError} When the kernel refuses (e.g. ENOMEM over the memlock limit).
   */
  registerBuffers(iovecs: { pointer: Deno.PointerObject; count: number }): void {
    this.#checkOpen();
    const rc = this.#lib.io_uring_register_buffers(this.#ring, iovecs.pointer, iovecs.count);
    if (rc < 0) throw new UringError("io_uring_register_buffers", -rc);
    this.#buffersRegistered = true;
  }

  /** Unregisters fixed buffers (`io_uring_unregister_buffers`). */
  unregisterBuffers(): void {
    if (!this.#buffersRegistered || this.#closed) return;
    const rc = this.#lib.io_uring_unregister_buffers(this.#ring);
    if (rc < 0) throw new UringError("io_uring_unregister_buffers", -rc);
    this.#buffersRegistered = false;
  }

  /**
   * Registers file descriptors; afterwards pass the index as `fd` with `SqeFlag.FIXED_FILE`.
   *
   * @param fds Open file descriptors (index i ↔ fds[i]).
   * @throws {UringError} When the kernel refuses (e.g. EBADF).
   */
  registerFiles(fds: readonly number[]): void {
    this.#checkOpen();
    const arr = new Int32Array(fds);
    const p = Deno.UnsafePointer.of(arr);
    const rc = this.#lib.io_uring_register_files(this.#ring, p, fds.length);
    if (rc < 0) throw new UringError("io_uring_register_files", -rc);
    this.#filesRegistered = true;
  }

  /** Unregisters files (`io_uring_unregister_files`). */
  unregisterFiles(): void {
    if (!this.#filesRegistered || this.#closed) return;
    const rc = this.#lib.io_uring_unregister_files(this.#ring);
    if (rc < 0) throw new UringError("io_uring_unregister_files", -rc);
    this.#filesRegistered = false;
  }

  /**
   * Cancels what is queued in JS, asks the kernel to cancel what is in flight, waits for every
   * completion, then tears the ring down. Safe to call twice; the second call waits for the first.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Same as {@linkcode Ring.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    // Operations that never reached the ring complete with -ECANCELED, asynchronously.
    const dropped = this.#queue.splice(this.#queueHead);
    this.#queueHead = 0;
    this.#queue.length = 0;
    for (const q of dropped) {
      for (const d of q.dones) queueMicrotask(() => d(-Errno.ECANCELED, 0));
    }
    if (this.#used > 0) {
      // Best effort: cancel what can be canceled (regular file I/O usually just finishes).
      if (this.#free.length > 0 && this.#sqeSpace() > 0) {
        this.#place({ preps: [(sqe) => prepCancelAny(sqe, ASYNC_CANCEL_ANY)], dones: [noop] });
      }
      this.#submitNow();
      this.#startPump();
    }
    while (this.#pump) await this.#pump;
    this.#closed = true;
    this.#lib.io_uring_queue_exit(this.#ring);
    freeNative(this.#mem);
  }

  #checkOpen(): void {
    if (this.#closing) throw new Error("Ring is closed: create a new Ring");
  }

  #sqeSpace(): number {
    return this.entries - ((this.#sqeTail - Atomics.load(this.#sqHead, 0)) >>> 0);
  }

  #enqueue(q: Queued): void {
    if (this.#queueHead === this.#queue.length && this.#fits(q.preps.length)) {
      this.#place(q);
    } else {
      this.#queue.push(q);
    }
    this.#scheduleFlush();
  }

  #fits(n: number): boolean {
    if (this.#free.length < n) return false;
    if (this.#sqeSpace() >= n) return true;
    this.#submitNow(); // SQ full: hand it to the kernel and take the room back
    return this.#sqeSpace() >= n;
  }

  /** Points the cursor at the next free SQE; the caller checked that one fits. */
  #nextSqe(): Sqe {
    const sqe = this.#sqe;
    sqe.offset = ((this.#sqeTail & this.#sqMask) >>> 0) * SQE_SIZE;
    return sqe;
  }

  /** Tags the SQE just filled with a token for `done` and makes it part of the tail. */
  #placed(done: Done | undefined): number {
    const token = this.#free.pop()!;
    const sqe = this.#sqe;
    sqe.view.setUint32(sqe.offset + SQE.userData, token, true);
    sqe.view.setUint32(sqe.offset + SQE.userData + 4, 0, true);
    this.#dones[token] = done;
    this.#sqeTail = (this.#sqeTail + 1) >>> 0;
    this.#unsubmitted++;
    this.#used++;
    return token;
  }

  /** Writes one queued item into the SQ; caller checked that it fits. */
  #place(q: Queued): void {
    const n = q.preps.length;
    for (let i = 0; i < n; i++) {
      const sqe = this.#nextSqe();
      q.preps[i](sqe);
      if (i < n - 1) {
        sqeSetFlags(sqe, sqe.view.getUint8(sqe.offset + SQE.flags) | SqeFlag.IO_LINK);
      }
      this.#placed(q.dones[i]);
    }
  }

  #drainQueue(): void {
    const queue = this.#queue;
    while (this.#queueHead < queue.length) {
      const q = queue[this.#queueHead];
      if (!this.#fits(q.preps.length)) break;
      queue[this.#queueHead++] = undefined as unknown as Queued;
      this.#place(q);
    }
    if (this.#queueHead === queue.length) {
      queue.length = 0;
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > queue.length) {
      queue.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      if (this.#closed) return;
      this.#submitNow();
      this.#startPump();
    });
  }

  #submitNow(): number {
    if (this.#unsubmitted === 0) return 0;
    this.#ringU32[RING.sq.sqeTail / 4] = this.#sqeTail;
    const rc = this.#lib.io_uring_submit(this.#ring);
    if (rc < 0) {
      // EAGAIN/EBUSY: the kernel is short of resources; completions will make room.
      if (rc === -Errno.EAGAIN || rc === -Errno.EBUSY || rc === -Errno.EINTR) return 0;
      throw new UringError("io_uring_submit", -rc);
    }
    this.#unsubmitted = Math.max(0, this.#unsubmitted - rc);
    if (rc > 0) this.stats.submits++;
    return rc;
  }

  #startPump(): void {
    if (this.#pump || this.#used === 0) return;
    this.#pump = this.#runPump().finally(() => {
      this.#pump = undefined;
      // Work queued while the last wait was returning.
      if (this.#used > 0 && !this.#closed) this.#startPump();
    });
  }

  async #runPump(): Promise<void> {
    if (this.#inlineTs) return this.#runInlinePump(this.#inlineTs);
    const lib = this.#lib;
    while (this.#used > 0) {
      if (this.#unsubmitted > 0) this.#submitNow();
      const inFlight = this.#used - this.#unsubmitted;
      const want = Math.max(1, Math.min(this.#waitBatch, inFlight));
      const rc = await lib.io_uring_wait_cqes_nonblocking(
        this.#ring,
        this.#cqePtrs,
        want,
        want > 1 ? this.#timespec : null,
        null,
      );
      this.stats.waits++;
      if (rc < 0 && rc !== -Errno.ETIME && rc !== -Errno.EINTR && rc !== -Errno.EAGAIN) {
        this.#failAll(-rc);
        return;
      }
      this.#reap();
      this.#drainQueue();
      this.#submitNow();
    }
  }

  /** Bounded synchronous waits on the JS thread, with a yield to the event loop after each. */
  async #runInlinePump(ts: Deno.PointerObject): Promise<void> {
    const lib = this.#lib;
    while (this.#used > 0) {
      if (this.#unsubmitted > 0) this.#submitNow();
      if (this.#reap() === 0) {
        const rc = lib.io_uring_wait_cqes(this.#ring, this.#cqePtrs, 1, ts, null);
        this.stats.waits++;
        if (rc < 0 && rc !== -Errno.ETIME && rc !== -Errno.EINTR && rc !== -Errno.EAGAIN) {
          this.#failAll(-rc);
          return;
        }
        this.#reap();
      }
      this.#drainQueue();
      // Let promise chains run (they queue the next SQEs), and timers and signals too.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Takes every ready CQE, advances the CQ head once, then runs the callbacks. */
  #reap(): number {
    const lib = this.#lib;
    const cqes = this.#cqes;
    let total = 0;
    for (;;) {
      const n = lib.io_uring_peek_batch_cqe(this.#ring, this.#cqePtrs, this.cqEntries);
      if (n === 0) break;
      // peek_batch returned &cqes[(head + i) & mask] for i < n; read them through our view.
      const head = Atomics.load(this.#cqHead, 0);
      for (let i = 0; i < n; i++) {
        const at = (((head + i) & this.#cqMask) >>> 0) * CQE_SIZE;
        this.#resTokens[i] = cqes.getUint32(at + CQE.userData, true);
        this.#resValues[i] = cqes.getInt32(at + CQE.res, true);
        this.#resFlags[i] = cqes.getUint32(at + CQE.flags, true);
      }
      Atomics.store(this.#cqHead, 0, (head + n) >>> 0);
      this.#dispatch(n);
      total += n;
    }
    return total;
  }

  #dispatch(n: number): void {
    const dones = this.#dones;
    const free = this.#free;
    for (let i = 0; i < n; i++) {
      const token = this.#resTokens[i];
      this.stats.completions++;
      const other = this.#partner[token];
      if (other >= 0) {
        this.#pairHalf(token, other, this.#resValues[i]);
        continue;
      }
      const done = dones[token];
      dones[token] = undefined;
      free.push(token);
      this.#used--;
      if (done) {
        try {
          done(this.#resValues[i], this.#resFlags[i]);
        } catch (err) {
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
  }

  /** One half of a linked pair completed: keep its result, or finish the pair. */
  #pairHalf(token: number, other: number, res: number): void {
    if (!this.#pairSeen[other]) {
      this.#pairSeen[token] = 1; // its token stays taken until the other half is in
      this.#pairRes[token] = res;
      return;
    }
    const first = this.#pairFirst[token] ? token : other;
    const resFirst = first === token ? res : this.#pairRes[other];
    const resSecond = first === token ? this.#pairRes[other] : res;
    const done = this.#endPair(first);
    try {
      done(resFirst, resSecond);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** Frees both tokens of the pair whose first half is `first`; returns its callback. */
  #endPair(first: number): PairDone {
    const second = this.#partner[first];
    const done = this.#pairDones[first]!;
    this.#pairDones[first] = undefined;
    this.#clearHalf(first);
    this.#clearHalf(second);
    return done;
  }

  #clearHalf(token: number): void {
    this.#partner[token] = -1;
    this.#pairFirst[token] = 0;
    this.#pairSeen[token] = 0;
    this.#free.push(token);
    this.#used--;
  }

  /** The wait itself failed (should not happen): fail every outstanding operation. */
  #failAll(errno: number): void {
    for (let t = 0; t < this.#dones.length; t++) {
      if (this.#partner[t] >= 0) {
        if (!this.#pairFirst[t]) continue; // failed with its first half
        const done = this.#endPair(t);
        queueMicrotask(() => done(-errno, -errno));
        continue;
      }
      const done = this.#dones[t];
      if (!done) continue;
      this.#dones[t] = undefined;
      this.#free.push(t);
      this.#used--;
      queueMicrotask(() => done(-errno, 0));
    }
  }
}

function noop(): void {}

/** `prepRw` plus the registered buffer index of the `*_FIXED` opcodes. */
function fillRw(
  sqe: Sqe,
  op: number,
  fd: number,
  addr: number,
  len: number,
  offset: number,
  bufIndex: number,
): void {
  prepRw(sqe, op, fd, addr, len, offset);
  if (bufIndex !== 0) sqe.view.setUint16(sqe.offset + SQE.bufIndex, bufIndex, true);
}
