/**
 * Recognizes filesystem, volume and partition-table signatures at the start of a device, so
 * that writing over one needs `--force`.
 *
 * @module
 */

/** [name, byte offset, bytes] of each signature we look for. */
const SIGNATURES: [string, number, number[]][] = [
  ["ext2/3/4 filesystem", 1080, [0x53, 0xef]],
  ["XFS filesystem", 0, [...new TextEncoder().encode("XFSB")]],
  ["btrfs filesystem", 65600, [...new TextEncoder().encode("_BHRfS_M")]],
  ["LUKS volume", 0, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]],
  ["LVM2 physical volume", 512, [...new TextEncoder().encode("LABELONE")]],
  ["swap space", 4086, [...new TextEncoder().encode("SWAPSPACE2")]],
  ["GPT partition table", 512, [...new TextEncoder().encode("EFI PART")]],
  ["NTFS filesystem", 3, [...new TextEncoder().encode("NTFS    ")]],
  ["FAT32 filesystem", 82, [...new TextEncoder().encode("FAT32   ")]],
  ["FAT filesystem", 54, [...new TextEncoder().encode("FAT1")]],
  ["ISO 9660 filesystem", 32769, [...new TextEncoder().encode("CD001")]],
  ["squashfs filesystem", 0, [...new TextEncoder().encode("hsqs")]],
  ["Linux RAID member", 4096, [0xfc, 0x4e, 0x2b, 0xa9]],
  ["MBR partition table", 510, [0x55, 0xaa]],
];

/** Bytes from the start of a device that {@linkcode detectSignature} needs (btrfs is last). */
export const SIGNATURE_BYTES = 65600 + 8;

/**
 * Names the first signature found in `head` (the first bytes of a device).
 *
 * @param head At least {@linkcode SIGNATURE_BYTES} bytes, or all the device has.
 * @returns A name like `"ext2/3/4 filesystem"`, or undefined.
 * @example
 * ```ts
 * import { detectSignature, SIGNATURE_BYTES } from "./signature.ts";
 * const head = new Uint8Array(SIGNATURE_BYTES);
 * head.set([0x53, 0xef], 1080); // the ext2/3/4 superblock magic
 * console.log(detectSignature(head)); // "ext2/3/4 filesystem"
 * ```
 */
export function detectSignature(head: Uint8Array): string | undefined {
  for (const [name, at, magic] of SIGNATURES) {
    if (at + magic.length > head.length) continue;
    if (magic.every((b, i) => head[at + i] === b)) return name;
  }
  return undefined;
}

/**
 * Reads the start of `path` and names a signature found there.
 *
 * @param path A block device.
 * @param offset Byte offset where the write would start (signatures are looked for there).
 * @returns The name, or undefined.
 * @example
 * ```ts ignore
 * const sig = await readSignature("/dev/loop1");
 * if (sig) console.log(`/dev/loop1 holds an ${sig}`);
 * ```
 */
export async function readSignature(path: string, offset = 0): Promise<string | undefined> {
  using f = await Deno.open(path);
  if (offset) await f.seek(offset, Deno.SeekMode.Start);
  const head = new Uint8Array(SIGNATURE_BYTES);
  let got = 0;
  while (got < head.length) {
    const n = await f.read(head.subarray(got));
    if (n === null) break;
    got += n;
  }
  return detectSignature(head.subarray(0, got));
}
