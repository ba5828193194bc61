import assert from "node:assert/strict";
import { detectSignature, readSignature, SIGNATURE_BYTES } from "./signature.ts";

function head(at: number, bytes: number[] | string): Uint8Array {
  const h = new Uint8Array(SIGNATURE_BYTES);
  h.set(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes, at);
  return h;
}

Deno.test("detectSignature() names filesystems, volumes and partition tables at their offsets", () => {
  const cases: [string, Uint8Array][] = [
    ["ext2/3/4 filesystem", head(1080, [0x53, 0xef])],
    ["XFS filesystem", head(0, "XFSB")],
    ["btrfs filesystem", head(65600, "_BHRfS_M")],
    ["swap space", head(4086, "SWAPSPACE2")],
    ["MBR partition table", head(510, [0x55, 0xaa])],
    ["GPT partition table", head(512, "EFI PART")],
    ["LUKS volume", head(0, [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe])],
    ["LVM2 physical volume", head(512, "LABELONE")],
    ["NTFS filesystem", head(3, "NTFS    ")],
    ["ISO 9660 filesystem", head(32769, "CD001")],
    ["Linux RAID member", head(4096, [0xfc, 0x4e, 0x2b, 0xa9])],
  ];
  for (const [name, h] of cases) assert.equal(detectSignature(h), name);
});

Deno.test("detectSignature() finds nothing in zeros, random data or a short head", () => {
  assert.equal(detectSignature(new Uint8Array(SIGNATURE_BYTES)), undefined);
  const random = new Uint8Array(SIGNATURE_BYTES);
  crypto.getRandomValues(random.subarray(0, 65536));
  random[510] = 0; // the one 2-byte magic random data could hold
  random[1080] = 0;
  assert.equal(detectSignature(random), undefined);
  assert.equal(detectSignature(head(1080, [0x53, 0xef]).subarray(0, 1081)), undefined);
});

Deno.test("a GPT disk is named for its GPT header, not its protective MBR", () => {
  const h = head(512, "EFI PART");
  h.set([0x55, 0xaa], 510);
  assert.equal(detectSignature(h), "GPT partition table");
});

for (
  const [tool, args, name] of [
    ["mkfs.ext4", ["-q", "-F"], "ext2/3/4 filesystem"],
    ["mkswap", [], "swap space"],
  ] as const
) {
  const found = await new Deno.Command("sh", {
    args: ["-c", `command -v ${tool}`],
    env: {
      PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin`,
    },
    stdout: "null",
  }).output().then((o) => o.success, () => false);
  if (!found) console.log(`skipping the ${tool} signature test: ${tool} is not installed`);
  Deno.test({
    name: `readSignature() recognizes what ${tool} writes`,
    ignore: !found,
    async fn() {
      const file = await Deno.makeTempFile({ suffix: ".img" });
      try {
        await Deno.truncate(file, 8 << 20);
        const out = await new Deno.Command(tool, {
          args: [...args, file],
          env: { PATH: `${Deno.env.get("PATH")}:/usr/sbin:/sbin` },
          stdout: "null",
          stderr: "piped",
        }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
        assert.equal(await readSignature(file), name);
      } finally {
        await Deno.remove(file);
      }
    },
  });
}
