// Real kernel errors: nbdkit (ddrescue / error filters, full plugin) → nbdfuse → losetup.
import assert from "node:assert/strict";
import { KcopydClient, KcopydFlags, openDevice } from "../mod.ts";
import { canUseFaults, faultDevice } from "./support/fault_device.ts";
import { loopImage } from "./support/loop.ts";
import { makeImage, readRange, sha256 } from "./support/image.ts";

const { ok, reason } = await canUseFaults();
if (!ok) console.log(`skipping fault tests: ${reason}`);

const SIZE = 4 << 20;
const SECTORS = SIZE / 512;

/** Per 512-byte sector: "src", "old", "zero" or "other". */
function classify(got: Uint8Array, src: Uint8Array, old: Uint8Array): string[] {
  const out: string[] = [];
  for (let s = 0; s < got.length / 512; s++) {
    const g = got.subarray(s * 512, (s + 1) * 512);
    const eq = (b: Uint8Array) => g.every((x, i) => x === b[s * 512 + i]);
    out.push(eq(src) ? "src" : eq(old) ? "old" : g.every((x) => x === 0) ? "zero" : "other");
  }
  return out;
}

/** A loop device over a fresh image filled with `byte`. */
function plainDest(byte: number) {
  return loopImage(SIZE, { byte });
}

Deno.test({
  name:
    "a read error sets readErr, reports the bad sectors, and leaves source data or old contents",
  ignore: !ok,
  async fn() {
    const srcImage = await makeImage(SIZE, { seed: 11 });
    await using bad = await faultDevice({ image: srcImage, badReads: [[1000 * 512, 2 * 512]] });
    await using dst = await plainDest(0xaa);
    await using src = await openDevice(bad.path);
    await using out = await openDevice(dst.path, { write: true });
    await using kc = await KcopydClient.create({ pages: 64, subJobSize: 64 << 10 });
    const r = await kc.copy({ device: src, sector: 0n, count: BigInt(SECTORS) }, [
      { device: out, sector: 0n },
    ]);
    assert.equal(r.readErr, true);
    assert.equal(r.writeErr, 0);
    assert.deepEqual(r.errors, [{ sector: 1000n, count: 2n, code: "EIO" }]);
    await out.close();
    const kinds = classify(
      await readRange(dst.image, 0, SIZE),
      await readRange(srcImage, 0, SIZE),
      new Uint8Array(SIZE).fill(0xaa),
    );
    assert.ok(kinds.every((k) => k === "src" || k === "old"), "no sector holds anything else");
    assert.equal(kinds[1000], "old", "the unreadable sectors keep their old contents");
    assert.equal(kinds[0], "src", "chunks before the error were copied");
    await Deno.remove(srcImage);
  },
});

Deno.test({
  name: "IGNORE_ERROR writes zeros exactly on unreadable sectors and source data elsewhere",
  ignore: !ok,
  async fn() {
    const srcImage = await makeImage(SIZE, { seed: 12 });
    const badRanges: [number, number][] = [[2051, 3], [4096, 1], [8000, 8]];
    await using bad = await faultDevice({
      image: srcImage,
      badReads: badRanges.map(([s, c]) => [s * 512, c * 512]),
    });
    await using d0 = await plainDest(0xaa);
    await using d1 = await plainDest(0x55);
    await using src = await openDevice(bad.path);
    await using o0 = await openDevice(d0.path, { write: true });
    await using o1 = await openDevice(d1.path, { write: true });
    await using kc = await KcopydClient.create({ pages: 256 });
    const r = await kc.copy(
      { device: src, sector: 0n, count: BigInt(SECTORS) },
      [{ device: o0, sector: 0n }, { device: o1, sector: 0n }],
      { flags: KcopydFlags.IGNORE_ERROR },
    );
    assert.equal(r.readErr, true);
    assert.equal(r.writeErr, 0);
    assert.deepEqual(
      r.errors,
      badRanges.map(([s, c]) => ({ sector: BigInt(s), count: BigInt(c), code: "EIO" })),
    );
    await o0.close();
    await o1.close();
    const want = await readRange(srcImage, 0, SIZE);
    for (const [s, c] of badRanges) want.fill(0, s * 512, (s + c) * 512);
    assert.equal(sha256(await readRange(d0.image, 0, SIZE)), sha256(want));
    assert.equal(sha256(await readRange(d1.image, 0, SIZE)), sha256(want));
    await Deno.remove(srcImage);
  },
});

Deno.test({
  name: "a failing destination 1 of 3 with IGNORE_ERROR gives writeErr 0b010; the others are exact",
  ignore: !ok,
  async fn() {
    const srcImage = await makeImage(SIZE, { seed: 13 });
    await using srcLoop = await plainDest(0);
    await Deno.copyFile(srcImage, srcLoop.image);
    await using d0 = await plainDest(0xaa);
    await using failing = await faultDevice({
      bytes: SIZE,
      writeError: "EIO",
      failWritesNow: true,
    });
    await using d2 = await plainDest(0xbb);
    await using src = await openDevice(srcLoop.path);
    await using o0 = await openDevice(d0.path, { write: true });
    await using o1 = await openDevice(failing.path, { write: true });
    await using o2 = await openDevice(d2.path, { write: true });
    await using kc = await KcopydClient.create({ pages: 128, subJobSize: 256 << 10 });
    const r = await kc.copy(
      { device: src, sector: 0n, count: BigInt(SECTORS) },
      [{ device: o0, sector: 0n }, { device: o1, sector: 0n }, { device: o2, sector: 0n }],
      { flags: KcopydFlags.IGNORE_ERROR },
    );
    assert.equal(r.readErr, false);
    assert.equal(r.writeErr, 0b010);
    assert.ok(r.errors.length >= 1 && r.errors.every((e) => e.dest === 1 && e.code === "EIO"));
    // Every chunk was attempted on the failing destination: together the errors cover it all.
    const covered = r.errors.reduce((n, e) => n + e.count, 0n);
    assert.equal(covered, BigInt(SECTORS));
    await o0.close();
    await o2.close();
    const want = sha256(await readRange(srcImage, 0, SIZE));
    assert.equal(sha256(await readRange(d0.image, 0, SIZE)), want);
    assert.equal(sha256(await readRange(d2.image, 0, SIZE)), want);
    await Deno.remove(srcImage);
  },
});

Deno.test({
  name: "a full device reports ENOSPC on its destination bit, and zero() reports its failure",
  ignore: !ok,
  async fn() {
    await using srcLoop = await plainDest(0x11);
    await using full = await faultDevice({ full: true, bytes: SIZE });
    await using src = await openDevice(srcLoop.path);
    await using dst = await openDevice(full.path, { write: true });
    await using kc = await KcopydClient.create({ pages: 64 });
    const r = await kc.copy({ device: src, sector: 0n, count: 2048n }, [
      { device: dst, sector: 8n },
    ]);
    assert.equal(r.writeErr, 1);
    assert.equal(r.errors[0].code, "ENOSPC");
    assert.equal(r.errors[0].dest, 0);
    assert.ok(r.errors[0].sector >= 8n && r.errors[0].sector < 8n + 2048n);
    const z = await kc.zero([{ device: dst, sector: 0n, count: 64n }]);
    assert.equal(z.writeErr, 1);
    // Zeroing goes loop → fallocate on the FUSE file, which reports the server's ENOSPC as EIO.
    assert.match(z.errors[0].code, /^(ENOSPC|EIO)$/);
    assert.deepEqual([z.errors[0].dest, z.errors[0].sector], [0, 0n]);
  },
});

/** Write requests from an nbdkit log: [offset, start line, end line]. */
function writes(log: string): { offset: number; start: number; end: number }[] {
  const lines = log.split("\n");
  const out = new Map<string, { offset: number; start: number; end: number }>();
  lines.forEach((l, i) => {
    const start = l.match(/ Write id=(\d+) offset=0x([0-9a-f]+) /);
    if (start) out.set(start[1], { offset: parseInt(start[2], 16), start: i, end: -1 });
    const end = l.match(/ \.\.\.Write id=(\d+) /);
    if (end) out.get(end[1])!.end = i;
  });
  return [...out.values()].sort((a, b) => a.start - b.start);
}

Deno.test({
  name: "WRITE_SEQ writes each destination in ascending order, one write at a time",
  ignore: !ok,
  async fn() {
    await using srcLoop = await plainDest(0);
    const data = await makeImage(SIZE, { seed: 14, dir: "/dev/shm" });
    await Deno.copyFile(data, srcLoop.image);
    await Deno.remove(data);
    await using logged = await faultDevice({ bytes: SIZE, log: true });
    await using src = await openDevice(srcLoop.path);
    await using dst = await openDevice(logged.path, { write: true });
    // 64 KiB writes: FUSE passes each one to nbdkit as a single request.
    await using kc = await KcopydClient.create({ pages: 256, subJobSize: 64 << 10 });
    const r = await kc.copy({ device: src, sector: 0n, count: BigInt(SECTORS) }, [
      { device: dst, sector: 0n },
    ], { flags: KcopydFlags.WRITE_SEQ });
    assert.equal(r.writeErr, 0);
    const w = writes(await Deno.readTextFile(logged.logFile!));
    assert.equal(w.length, SIZE / (64 << 10));
    for (let i = 1; i < w.length; i++) {
      assert.ok(w[i].offset > w[i - 1].offset, `write ${i} ascends`);
      assert.ok(w[i].start > w[i - 1].end, `write ${i} starts after write ${i - 1} finished`);
    }
    await dst.close();
    assert.equal(
      sha256(await readRange(logged.image!, 0, SIZE)),
      sha256(await readRange(srcLoop.image, 0, SIZE)),
    );
  },
});

Deno.test({
  name: "WRITE_SEQ issues no write after a failed one, even with IGNORE_ERROR asked for",
  ignore: !ok,
  async fn() {
    await using srcLoop = await plainDest(0x33);
    await using failing = await faultDevice({
      bytes: SIZE,
      log: true,
      writeError: "EIO",
      failWritesNow: true,
    });
    await using src = await openDevice(srcLoop.path);
    await using dst = await openDevice(failing.path, { write: true });
    await using kc = await KcopydClient.create({ pages: 256, subJobSize: 64 << 10 });
    const r = await kc.copy({ device: src, sector: 0n, count: BigInt(SECTORS) }, [
      { device: dst, sector: 0n },
    ], { flags: KcopydFlags.WRITE_SEQ | KcopydFlags.IGNORE_ERROR });
    assert.equal(r.writeErr, 1);
    assert.deepEqual(r.errors, [{ dest: 0, sector: 0n, count: 128n, code: "EIO" }]);
    const w = writes(await Deno.readTextFile(failing.logFile!));
    assert.equal(w.length, 1, "only the first write reached the device");
  },
});

Deno.test({
  name: "small one-chunk jobs (the callback fast path) report read and write errors like big ones",
  ignore: !ok,
  async fn() {
    const srcImage = await makeImage(SIZE, { seed: 15 });
    await using bad = await faultDevice({ image: srcImage, badReads: [[70 * 512, 512]] });
    await using failing = await faultDevice({
      bytes: SIZE,
      writeError: "EIO",
      failWritesNow: true,
    });
    await using d0 = await plainDest(0xaa);
    await using src = await openDevice(bad.path);
    await using out = await openDevice(d0.path, { write: true });
    await using wout = await openDevice(failing.path, { write: true });
    await using kc = await KcopydClient.create({ pages: 64 });
    // One 32 KiB chunk with sector 70 unreadable, IGNORE_ERROR: zeros on exactly that sector.
    const r = await kc.copy(
      { device: src, sector: 64n, count: 64n },
      [{ device: out, sector: 0n }],
      {
        flags: KcopydFlags.IGNORE_ERROR,
      },
    );
    assert.equal(r.readErr, true);
    assert.deepEqual(r.errors, [{ sector: 70n, count: 1n, code: "EIO" }]);
    // Without IGNORE_ERROR the chunk is not written at all.
    const r2 = await kc.copy({ device: src, sector: 64n, count: 64n }, [{
      device: out,
      sector: 64n,
    }]);
    assert.equal(r2.readErr, true);
    // A good chunk to a failing destination.
    const w = await kc.copy({ device: src, sector: 0n, count: 8n }, [{
      device: wout,
      sector: 16n,
    }]);
    assert.deepEqual(w, {
      readErr: false,
      writeErr: 1,
      errors: [{ dest: 0, sector: 16n, count: 8n, code: "EIO" }],
    });
    await out.close();
    const want = await readRange(srcImage, 64 * 512, 64 * 512);
    want.fill(0, 6 * 512, 7 * 512);
    assert.equal(sha256(await readRange(d0.image, 0, 64 * 512)), sha256(want));
    assert.ok((await readRange(d0.image, 64 * 512, 64 * 512)).every((b) => b === 0xaa));
    await Deno.remove(srcImage);
  },
});
