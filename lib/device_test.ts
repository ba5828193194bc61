import assert from "node:assert/strict";
import { DeviceError, openDevice } from "./device.ts";

const isRoot = Deno.uid() === 0;
const hasLosetup = await new Deno.Command("losetup", { args: ["--version"], stdout: "null" })
  .output().then((o) => o.success, () => false);
const loopReason = !isRoot ? "needs root" : !hasLosetup ? "needs losetup (util-linux)" : "";
if (loopReason) console.log(`skipping loop-device tests: ${loopReason}`);

async function run(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout).trim();
}

/** A loop device over a fresh file of `bytes`, detached on dispose. */
async function loop(bytes: number, sectorSize = 512) {
  const file = await Deno.makeTempFile({ dir: "/var/tmp", prefix: "kcopyd-loop-" });
  await Deno.truncate(file, bytes);
  const path = await run("losetup", "--find", "--show", "--sector-size", `${sectorSize}`, file);
  return {
    path,
    async [Symbol.asyncDispose]() {
      await run("losetup", "-d", path).catch(() => {});
      await Deno.remove(file);
    },
  };
}

Deno.test("openDevice reads a regular file's size and uses O_DIRECT where the filesystem allows", async () => {
  const path = await Deno.makeTempFile({ dir: "/var/tmp" });
  await Deno.truncate(path, 1024 * 1024 + 100);
  try {
    await using dev = await openDevice(path);
    assert.equal(dev.sizeBytes, 1048676n);
    assert.equal(dev.sizeSectors, 2048n);
    assert.equal(dev.isBlockDevice, false);
    assert.equal(dev.writable, false);
    assert.equal(dev.direct, true);
    assert.equal(dev.logicalBlockSize, 512);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("openDevice says whether O_DIRECT is in effect, and why not", async () => {
  // tmpfs accepts O_DIRECT since Linux 6.6 and refuses it before; either way the device says so.
  const path = await Deno.makeTempFile({ dir: "/dev/shm" });
  await Deno.truncate(path, 8192);
  try {
    await using dev = await openDevice(path, { write: true });
    if (dev.direct) assert.equal(dev.directFallback, undefined);
    else assert.match(dev.directFallback ?? "", /does not support O_DIRECT/);
    await using buffered = await openDevice(path, { direct: false });
    assert.equal(buffered.direct, false);
    assert.equal(buffered.directFallback, undefined, "no fallback when none was asked for");
    await dev.close();
    await dev.close(); // twice is harmless
    assert.ok(dev.closed);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("openDevice refuses missing paths, directories and character devices clearly", async () => {
  await assert.rejects(openDevice("/nonexistent/disk.img"), (e) => {
    assert.ok(e instanceof DeviceError);
    assert.equal(e.code, "ENOENT");
    assert.match(e.message, /"\/nonexistent\/disk.img"/);
    return true;
  });
  await assert.rejects(
    openDevice("/var/tmp"),
    (e) => e instanceof DeviceError && e.code === "EISDIR",
  );
  await assert.rejects(
    openDevice("/dev/null"),
    (e) => e instanceof DeviceError && e.code === "ENOTBLK",
  );
  await assert.rejects(openDevice(""), TypeError);
});

Deno.test({
  name: "openDevice on a loop device reports its size and block sizes",
  ignore: loopReason !== "",
  async fn() {
    await using l = await loop(8 << 20, 4096);
    await using dev = await openDevice(l.path);
    assert.equal(dev.isBlockDevice, true);
    assert.equal(dev.sizeBytes, 8n << 20n);
    assert.equal(dev.sizeSectors, 16384n);
    assert.equal(dev.logicalBlockSize, 4096);
    assert.ok(dev.physicalBlockSize >= 4096);
    assert.match(dev.id, /^blk:/);
    assert.equal(dev.exclusive, false, "read-only opens are not exclusive");
  },
});

Deno.test({
  name: "a writable block device is opened O_EXCL and a second exclusive holder is refused",
  ignore: loopReason !== "",
  async fn() {
    await using l = await loop(1 << 20);
    await using first = await openDevice(l.path, { write: true });
    assert.equal(first.exclusive, true);
    await assert.rejects(openDevice(l.path, { write: true }), (e) => {
      assert.ok(e instanceof DeviceError);
      assert.equal(e.code, "EBUSY");
      assert.match(e.message, /busy.*mounted or held open exclusively/);
      return true;
    });
    // A plain reader is still allowed, and the same device has the same id.
    await using reader = await openDevice(l.path);
    assert.equal(reader.id, first.id);
    await first.close();
    await using again = await openDevice(l.path, { write: true });
    assert.equal(again.exclusive, true);
  },
});
