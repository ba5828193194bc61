/**
 * The few libc functions we need (glibc, x86_64 and aarch64 Linux), and their constants.
 *
 * @module
 */

const symbols = {
  // int open(const char *path, int flags, mode_t mode);
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int fstat(int fd, struct stat *st);
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  // int ioctl(int fd, unsigned long request, void *arg);
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int posix_memalign(void **memptr, size_t alignment, size_t size);
  posix_memalign: { parameters: ["buffer", "usize", "usize"], result: "i32" },
  // void free(void *ptr);
  free: { parameters: ["pointer"], result: "void" },
  // void *memset(void *s, int c, size_t n);
  memset: { parameters: ["pointer", "i32", "usize"], result: "pointer" },
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  // int munmap(void *addr, size_t length);
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // int madvise(void *addr, size_t length, int advice);
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  // int fallocate(int fd, int mode, off_t offset, off_t len);
  fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  // int fsync(int fd);
  fsync: { parameters: ["i32"], result: "i32" },
  // int ftruncate(int fd, off_t length);
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
  // char *strerror(int errnum);
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded libc symbols. */
export type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let loaded: Libc | undefined;

/** Loads libc once (`libc.so.6`) and returns its symbols. */
export function libc(): Libc {
  if (!loaded) loaded = Deno.dlopen("libc.so.6", symbols).symbols;
  return loaded;
}

/** `mmap(2)` protections. */
export const PROT = {
  READ: 1,
} as const;

/** `mmap(2)` flags. */
export const MAP = {
  PRIVATE: 0x02,
  ANONYMOUS: 0x20,
} as const;

/** `madvise(2)` advice. */
export const MADV = {
  HUGEPAGE: 14,
} as const;

/** `open(2)` flags (Linux x86_64 values). */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  TRUNC: 0o1000,
  NONBLOCK: 0o4000,
  DIRECT: 0o40000,
  CLOEXEC: 0o2000000,
} as const;

/** Block device ioctls. */
export const Ioctl = {
  BLKGETSIZE64: 0x80081272n,
  BLKSSZGET: 0x1268n,
  BLKPBSZGET: 0x127bn,
  BLKROGET: 0x125en,
} as const;

/** `struct stat` layout on x86_64 glibc. */
export const STAT = {
  size: 144,
  dev: 0,
  ino: 8,
  mode: 24,
  rdev: 40,
  stSize: 48,
  blksize: 56,
  blocks: 64,
} as const;

/** `st_mode` file type bits. */
export const S = {
  IFMT: 0o170000,
  IFREG: 0o100000,
  IFBLK: 0o060000,
  IFDIR: 0o040000,
  IFCHR: 0o020000,
} as const;

/** The calling thread's `errno` (valid right after a failed synchronous call). */
export function errno(): number {
  const p = libc().__errno_location();
  return new Deno.UnsafePointerView(p!).getInt32(0);
}

/** `strerror(err)`. */
export function strerror(err: number): string {
  const p = libc().strerror(err);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${err}`;
}

/** A NUL-terminated copy of `s` for passing to C. */
export function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}
