// KcopydClient on real loop devices: fan-out, logical block sizes, and flush reaching the device.
import assert from "node:assert/strict";
import { KcopydClient, KcopydFlags, openDevice } from "../mod.ts";
import { readRange, sha256, sha256File } from "./support/image.ts";
import { canUseLoop, loopImage } from "./support/loop.ts";
import { canUseFaults, faultDevice } from "./support/fault_device.ts";

const loops = await canUseLoop();
if (!loops.ok) console.log(`skipping client loop-device tests: ${loops.reason}`);
const faults = await canUseFaults();

Deno.test({
  name: "copy() fans out 1 → 3 loop devices byte-exact at odd offsets and sizes",
  ignore: !loops.ok,
  async fn() {
    const SIZE = 32 << 20;
    await using s = await loopImage(SIZE, { seed: 21 });
    const ds = [
      await loopImage(SIZE, { byte: 1 }),
      await loopImage(SIZE, { byte: 2 }),
      await loopImage(SIZE, { byte: 3 }),
    ];
    try {
      await using src = await openDevice(s.path);
      const outs = await Promise.all(ds.map((d) => openDevice(d.path, { write: true })));
      await using kc = await KcopydClient.create({ pages: 512 });
      const count = 40_001n; // ~19.5 MiB: not a multiple of the sub-job size
      const r = await kc.copy(
        { device: src, sector: 333n, count },
        outs.map((device, i) => ({ device, sector: BigInt(17 + 1000 * i) })),
      );
      assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
      for (const o of outs) await o.close();
      const want = await sha256File(s.image, 333 * 512, Number(count) * 512);
      for (const [i, d] of ds.entries()) {
        const at = (17 + 1000 * i) * 512;
        assert.equal(await sha256File(d.image, at, Number(count) * 512), want, `dest ${i}`);
        assert.ok((await readRange(d.image, 0, at)).every((b) => b === i + 1), "before: untouched");
        const after = await readRange(d.image, at + Number(count) * 512, 4096);
        assert.ok(after.every((b) => b === i + 1), "after: untouched");
      }
    } finally {
      for (const d of ds) await d[Symbol.asyncDispose]();
    }
  },
});

Deno.test({
  name: "ranges not aligned to a 4096-byte logical block are refused with a RangeError naming it",
  ignore: !loops.ok,
  async fn() {
    await using s = await loopImage(1 << 20, { seed: 22, sectorSize: 4096 });
    await using d = await loopImage(1 << 20, { byte: 0, sectorSize: 4096 });
    await using src = await openDevice(s.path);
    await using dst = await openDevice(d.path, { write: true });
    assert.equal(src.logicalBlockSize, 4096);
    await using kc = await KcopydClient.create({ pages: 16 });
    for (const [sector, count, dsector] of [[1n, 8n, 0n], [0n, 9n, 0n], [0n, 8n, 4n]]) {
      await assert.rejects(
        kc.copy({ device: src, sector, count }, [{ device: dst, sector: dsector }]),
        (e: Error) => e instanceof RangeError && /4096-byte logical block/.test(e.message),
      );
    }
    await assert.rejects(kc.zero([{ device: dst, sector: 3n, count: 8n }]), /4096/);
    assert.ok((await readRange(d.image, 0, 1 << 20)).every((b) => b === 0), "nothing written");
    const r = await kc.copy({ device: src, sector: 8n, count: 64n }, [{
      device: dst,
      sector: 16n,
    }]);
    assert.equal(r.writeErr, 0);
    await dst.close();
    assert.equal(
      sha256(await readRange(d.image, 16 * 512, 64 * 512)),
      await sha256File(s.image, 8 * 512, 64 * 512),
    );
  },
});

Deno.test({
  name: "flush: true sends a flush to every destination after its last write",
  ignore: !faults.ok,
  async fn() {
    await using s = await loopImage(4 << 20, { seed: 23 });
    await using logged = await faultDevice({ bytes: 4 << 20, log: true });
    await using src = await openDevice(s.path);
    await using dst = await openDevice(logged.path, { write: true });
    await using kc = await KcopydClient.create({ pages: 64 });
    let r = await kc.copy({ device: src, sector: 0n, count: 2048n }, [{ device: dst, sector: 0n }]);
    assert.equal(r.writeErr, 0);
    const flushes = (log: string) => log.match(/ Flush id=/g)?.length ?? 0;
    // (FUSE and the loop driver may flush on their own, e.g. at open: count, do not assume 0.)
    const before = flushes(await Deno.readTextFile(logged.logFile!));
    r = await kc.copy({ device: src, sector: 0n, count: 2048n }, [{ device: dst, sector: 2048n }], {
      flush: true,
      flags: KcopydFlags.IGNORE_ERROR,
    });
    assert.equal(r.writeErr, 0);
    const log = await Deno.readTextFile(logged.logFile!);
    assert.ok(flushes(log) > before, "the job flushed the destination");
    const lines = log.split("\n");
    const lastWriteDone = lines.findLastIndex((l) => / \.\.\.Write id=/.test(l));
    const flush = lines.findLastIndex((l) => / Flush id=/.test(l));
    assert.ok(flush > lastWriteDone, "the flush follows the job's last completed write");
  },
});
