/**
 * The `kcopyd --help` text.
 *
 * @module
 */

/**
 * Help text (stdout, exit 0).
 *
 * @example
 * ```ts
 * import { HELP } from "./help.ts";
 * console.log(HELP.split("\n")[0]);
 * ```
 */
export const HELP = `kcopyd: copy and zero ranges of block devices and image files (io_uring)

Usage:
  kcopyd copy   SRC[:SECTOR[+COUNT]] DEST[:SECTOR] [DEST[:SECTOR]...] [options]
  kcopyd zero   DEST[:SECTOR[+COUNT]] [DEST...] [options]
  kcopyd verify SRC[:SECTOR[+COUNT]] DEST[:SECTOR] [DEST...]
  kcopyd info   PATH...

Commands:
  copy    read SRC once and write it to every DEST (up to 32)
  zero    zero each DEST region
  verify  compare byte for byte; print the first differing sector and the count per DEST
  info    size, block sizes, kind and O_DIRECT support of each PATH

Regions:
  SECTOR and COUNT are 512-byte sectors, or sizes with a unit: B bytes; K/KiB, M/MiB, G/GiB,
  T/TiB (powers of 1024); KB, MB, GB, TB (powers of 1000). Sizes must be whole sectors.
  No COUNT means to the end of the source (for zero: to the end of that device).
  A path that exists as written is always taken whole; otherwise the region is the text after
  the last ":". Examples: /dev/loop0:2048+1GiB  disk.img:8  backup.img:1M+512K
  NBD URIs carry the region after the whole URI: nbd://host:10809/disk:8+4MiB
  A DEST that does not exist is created as a file of the needed size; an existing DEST that is
  too small is refused, never extended.

Options:
  --ignore-errors      keep going after I/O errors (unreadable sectors are written as zeros)
  --write-seq          write each destination in ascending order, one write at a time
  --flush              make destinations durable (fsync) before reporting completion
  --verify             compare every destination with the source after copying
  --throttle PERCENT   keep devices busy at most PERCENT of the time (1-100)
  --rate BYTES/s       limit the copy rate, e.g. --rate 100M
  --sub-job-size SIZE  bytes per chunk (default 1M, a multiple of 4K)
  --memory SIZE        memory set aside for data (default 32M)
  --json               print one JSON object on stdout at the end (also for verify and info)
  -q, --quiet          no progress and no summary (errors are still printed)
  -f, --force          allow writing over a block device that holds a filesystem, volume
                       signature or partition table
  -h, --help           show this help
  -V, --version        show the version

Progress is shown on stderr when it is a terminal. Ctrl-C (or SIGTERM) stops issuing I/O,
lets the I/O in flight finish and reports which sectors are known good.

Exit status: 0 success; 1 I/O error or verify mismatch; 2 bad usage or input, nothing written;
130 after Ctrl-C (SIGINT); 143 after SIGTERM.
`;
