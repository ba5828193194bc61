/**
 * The liburing 2.3 symbol table and its loader. Only symbols that liburing.so.2 (2.3)
 * exports are required; newer ones are `optional`. Header-only helpers (`io_uring_prep_*`,
 * `io_uring_cqe_seen`, `io_uring_wait_cqe`) live in TypeScript (`lib/sqe.ts`, `lib/ring.ts`).
 *
 * @module
 */

const symbols = {
  // int io_uring_queue_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p);
  io_uring_queue_init_params: { parameters: ["u32", "pointer", "pointer"], result: "i32" },
  // void io_uring_queue_exit(struct io_uring *ring);
  io_uring_queue_exit: { parameters: ["pointer"], result: "void" },
  // int io_uring_submit(struct io_uring *ring);
  io_uring_submit: { parameters: ["pointer"], result: "i32" },
  // int io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
  //     unsigned wait_nr, struct __kernel_timespec *ts, sigset_t *sigmask);
  io_uring_submit_and_wait_timeout: {
    parameters: ["pointer", "pointer", "u32", "pointer", "pointer"],
    result: "i32",
  },
  // int io_uring_wait_cqes(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
  //     struct __kernel_timespec *ts, sigset_t *sigmask);
  io_uring_wait_cqes: {
    parameters: ["pointer", "pointer", "u32", "pointer", "pointer"],
    result: "i32",
  },
  // The same function, run on a worker thread: the event loop stays free while it waits.
  io_uring_wait_cqes_nonblocking: {
    name: "io_uring_wait_cqes",
    parameters: ["pointer", "pointer", "u32", "pointer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  // unsigned io_uring_peek_batch_cqe(struct io_uring *ring, struct io_uring_cqe **cqes, unsigned count);
  io_uring_peek_batch_cqe: { parameters: ["pointer", "pointer", "u32"], result: "u32" },
  // int io_uring_register_buffers(struct io_uring *ring, const struct iovec *iovecs, unsigned nr_iovecs);
  io_uring_register_buffers: { parameters: ["pointer", "pointer", "u32"], result: "i32" },
  // int io_uring_unregister_buffers(struct io_uring *ring);
  io_uring_unregister_buffers: { parameters: ["pointer"], result: "i32" },
  // int io_uring_register_files(struct io_uring *ring, const int *files, unsigned nr_files);
  io_uring_register_files: { parameters: ["pointer", "pointer", "u32"], result: "i32" },
  // int io_uring_register_files_update(struct io_uring *ring, unsigned off, const int *files, unsigned nr_files);
  io_uring_register_files_update: {
    parameters: ["pointer", "u32", "pointer", "u32"],
    result: "i32",
  },
  // int io_uring_unregister_files(struct io_uring *ring);
  io_uring_unregister_files: { parameters: ["pointer"], result: "i32" },
  // int io_uring_register_ring_fd(struct io_uring *ring);
  io_uring_register_ring_fd: { parameters: ["pointer"], result: "i32" },
  // int io_uring_major_version(void); (liburing 2.4+)
  io_uring_major_version: { parameters: [], result: "i32", optional: true },
  // int io_uring_minor_version(void); (liburing 2.4+)
  io_uring_minor_version: { parameters: [], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded liburing symbols. */
export type Liburing = Deno.DynamicLibrary<typeof symbols>["symbols"];

/** Thrown when liburing cannot be loaded; `cause` holds the loader's error. */
export class LiburingLoadError extends Error {
  /** The path or soname that was tried. */
  readonly path: string;
  /**
   * Creates the error.
   *
   * @param path The library path that failed to load.
   * @param cause The loader's error.
   */
  constructor(path: string, cause: unknown) {
    super(
      `Cannot load liburing from "${path}": install it with "apt-get install liburing2" ` +
        `or set KCOPYD_LIBURING_PATH to the library file`,
      { cause },
    );
    this.name = "LiburingLoadError";
    this.path = path;
  }
}

let loaded: Liburing | undefined;

/** The library path in use: `KCOPYD_LIBURING_PATH`, else the soname `liburing.so.2`. */
export function liburingPath(): string {
  let override: string | undefined;
  try {
    override = Deno.env.get("KCOPYD_LIBURING_PATH");
  } catch {
    override = undefined;
  }
  return override || "liburing.so.2";
}

/** Loads liburing once and returns its symbols; throws `LiburingLoadError` on failure. */
export function liburing(): Liburing {
  if (loaded) return loaded;
  const path = liburingPath();
  try {
    loaded = Deno.dlopen(path, symbols).symbols;
  } catch (err) {
    throw new LiburingLoadError(path, err);
  }
  return loaded;
}
