// KcopydClient on real image files (ext4 with O_DIRECT, and tmpfs without it).
import assert from "node:assert/strict";
import { createHash, randomFillSync } from "node:crypto";
import { type BlockDevice, KcopydClient, KcopydFlags, openDevice, Throttle } from "../mod.ts";

const DIR = "/var/tmp";

async function randomFile(bytes: number, dir = DIR): Promise<string> {
  const path = await Deno.makeTempFile({ dir, prefix: "kcopyd-src-" });
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 65536) randomFillSync(data.subarray(i, i + 65536));
  await Deno.writeFile(path, data);
  return path;
}

async function patternFile(bytes: number, byte: number, dir = DIR): Promise<string> {
  const path = await Deno.makeTempFile({ dir, prefix: "kcopyd-dst-" });
  await Deno.writeFile(path, new Uint8Array(bytes).fill(byte));
  return path;
}

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

async function slice(path: string, sector: number, count: number): Promise<Uint8Array> {
  const all = await Deno.readFile(path);
  return all.subarray(sector * 512, (sector + count) * 512);
}

/** Opens paths and closes them (and removes the files) when disposed. */
class Files implements AsyncDisposable {
  readonly devices: BlockDevice[] = [];
  readonly paths: string[] = [];
  async open(path: string, write = false): Promise<BlockDevice> {
    const d = await openDevice(path, { write });
    this.devices.push(d);
    if (!this.paths.includes(path)) this.paths.push(path);
    return d;
  }
  async [Symbol.asyncDispose](): Promise<void> {
    for (const d of this.devices) await d.close();
    for (const p of this.paths) await Deno.remove(p).catch(() => {});
  }
}

for (const n of [1, 3, 8]) {
  Deno.test(`copy() writes every one of ${n} destinations byte-exact at non-zero offsets`, async () => {
    await using files = new Files();
    const count = 12345; // odd: not a multiple of the 1 MiB sub-job
    const srcPath = await randomFile((count + 100) * 512);
    const src = await files.open(srcPath);
    const dests: BlockDevice[] = [];
    const destPaths: string[] = [];
    for (let i = 0; i < n; i++) {
      const p = await patternFile((count + 3000) * 512, 0xaa);
      destPaths.push(p);
      dests.push(await files.open(p, true));
    }
    await using kc = await KcopydClient.create({ pages: 256 });
    const r = await kc.copy(
      { device: src, sector: 7n, count: BigInt(count) },
      dests.map((device, i) => ({ device, sector: BigInt(11 + i * 100) })),
    );
    assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
    const want = sha(await slice(srcPath, 7, count));
    for (let i = 0; i < n; i++) {
      assert.equal(sha(await slice(destPaths[i], 11 + i * 100, count)), want, `dest ${i}`);
      const before = await slice(destPaths[i], 0, 11 + i * 100);
      assert.ok(before.every((b) => b === 0xaa), `dest ${i}: bytes before the range untouched`);
      const after = await slice(destPaths[i], 11 + i * 100 + count, 3000 - 11 - i * 100);
      assert.ok(after.every((b) => b === 0xaa), `dest ${i}: bytes after the range untouched`);
    }
  });
}

Deno.test("copy() of a job many times larger than the pool completes byte-exact", async () => {
  await using files = new Files();
  const bytes = 24 << 20;
  const srcPath = await randomFile(bytes);
  const dstPath = await patternFile(bytes, 0);
  const src = await files.open(srcPath);
  const dst = await files.open(dstPath, true);
  await using kc = await KcopydClient.create({ pages: 16 }); // 64 KiB of pool
  const r = await kc.copy({ device: src, sector: 0n, count: BigInt(bytes / 512) }, [
    { device: dst, sector: 0n },
  ]);
  assert.equal(r.readErr, false);
  assert.equal(r.writeErr, 0);
  assert.equal(sha(await Deno.readFile(dstPath)), sha(await Deno.readFile(srcPath)));
});

Deno.test("1 000 concurrent small jobs on a 16-page pool all complete correctly", async () => {
  await using files = new Files();
  const sectors = 64 * 1000;
  const srcPath = await randomFile(sectors * 512);
  const dstPath = await patternFile(sectors * 512, 0);
  const src = await files.open(srcPath);
  const dst = await files.open(dstPath, true);
  await using kc = await KcopydClient.create({ pages: 16 });
  // Each job copies its own 64-sector block to the mirrored position (block i → 999 - i).
  let notified = 0;
  const jobs = Array.from({ length: 1000 }, (_, i) =>
    kc.copy(
      { device: src, sector: BigInt(i * 64), count: 64n },
      [{ device: dst, sector: BigInt((999 - i) * 64) }],
      { notify: () => notified++ },
    ));
  assert.equal(notified, 0, "no notify runs inside copy()");
  const results = await Promise.all(jobs);
  assert.equal(notified, 1000);
  assert.ok(results.every((r) => !r.readErr && r.writeErr === 0));
  const s = await Deno.readFile(srcPath);
  const d = await Deno.readFile(dstPath);
  for (let i = 0; i < 1000; i++) {
    const a = s.subarray(i * 32768, (i + 1) * 32768);
    const b = d.subarray((999 - i) * 32768, (1000 - i) * 32768);
    assert.ok(a.every((x, k) => x === b[k]), `block ${i}`);
  }
});

Deno.test("notify runs once, asynchronously, with readErr, writeErr and the context", async () => {
  await using files = new Files();
  const src = await files.open(await randomFile(64 * 512));
  const dst = await files.open(await patternFile(64 * 512, 0), true);
  await using kc = await KcopydClient.create({ pages: 4 });
  const calls: unknown[][] = [];
  let returned = false;
  const ctx = { id: 42 };
  const p = kc.copy({ device: src, sector: 0, count: 0 }, [{ device: dst, sector: 0 }], {
    notify: (readErr, writeErr, context) => {
      assert.ok(returned, "notify never runs inside copy()");
      calls.push([readErr, writeErr, context]);
    },
    context: ctx,
  });
  returned = true;
  const r = await p;
  assert.deepEqual(calls, [[false, 0, ctx]]);
  assert.equal(calls[0][2], ctx);
  assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
});

Deno.test("zero() zeroes ranges of different sizes on several destinations, nothing else", async () => {
  await using files = new Files();
  // ext4 takes fallocate(ZERO_RANGE); tmpfs refuses it, so writes from the zero buffer are used.
  for (const dir of [DIR, "/dev/shm"]) {
    const a = await randomFile(4 << 20, dir);
    const b = await randomFile(4 << 20, dir);
    const before = [await Deno.readFile(a), await Deno.readFile(b)];
    const da = await files.open(a, true);
    const db = await files.open(b, true);
    await using kc = await KcopydClient.create({ pages: 64, subJobSize: 64 << 10 });
    const r = await kc.zero([
      { device: da, sector: 3n, count: 5000n },
      { device: db, sector: 100n, count: 17n },
    ], { flush: true });
    assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] }, dir);
    const after = [await Deno.readFile(a), await Deno.readFile(b)];
    const ranges: [number, number][] = [[3, 5000], [100, 17]];
    for (let i = 0; i < 2; i++) {
      const [s, c] = ranges[i];
      assert.ok(after[i].subarray(s * 512, (s + c) * 512).every((x) => x === 0), `${dir} ${i}`);
      assert.equal(sha(after[i].subarray(0, s * 512)), sha(before[i].subarray(0, s * 512)));
      assert.equal(sha(after[i].subarray((s + c) * 512)), sha(before[i].subarray((s + c) * 512)));
    }
  }
});

Deno.test("flush() and destroy() resolve only after every job's notify ran", async () => {
  await using files = new Files();
  const src = await files.open(await randomFile(8 << 20));
  const dst = await files.open(await patternFile(8 << 20, 0), true);
  const kc = await KcopydClient.create({ pages: 32 });
  let notified = 0;
  const settled: boolean[] = [];
  for (let i = 0; i < 16; i++) {
    kc.copy({ device: src, sector: BigInt(i * 1024), count: 1024n }, [
      { device: dst, sector: BigInt(i * 1024) },
    ], { notify: () => notified++ }).then(() => settled.push(true));
  }
  await kc.flush();
  assert.equal(notified, 16);
  for (let i = 0; i < 8; i++) {
    kc.copy({ device: src, sector: BigInt(i * 8), count: 8n }, [
      { device: dst, sector: BigInt(i * 8) },
    ], { notify: () => notified++ });
  }
  await Promise.all([kc.destroy(), kc.destroy()]);
  assert.equal(notified, 24);
  assert.equal(settled.length, 16);
  await assert.rejects(
    kc.copy({ device: src, sector: 0n, count: 8n }, [{ device: dst, sector: 0n }]),
    (e: Error) => e.constructor === Error && /destroyed/.test(e.message),
  );
  await kc.destroy();
});

Deno.test("invalid jobs reject before any I/O with RangeError or TypeError, never throw", async () => {
  await using files = new Files();
  const srcPath = await randomFile(1 << 20);
  const dstPath = await patternFile(1 << 20, 0x55);
  const src = await files.open(srcPath);
  const srcAgain = await files.open(srcPath, true); // same inode, another descriptor
  const linkPath = srcPath + ".link";
  await Deno.symlink(srcPath, linkPath);
  files.paths.push(linkPath);
  const viaLink = await files.open(linkPath, true);
  const dst = await files.open(dstPath, true);
  const dstRo = await files.open(dstPath);
  await using kc = await KcopydClient.create({ pages: 16 });
  const S = 2048n; // sectors in each file
  const cases: [
    string,
    () => Promise<unknown>,
    ErrorConstructor | RangeErrorConstructor,
    RegExp,
  ][] = [
    [
      "source past the end",
      () => kc.copy({ device: src, sector: S - 4n, count: 8n }, [{ device: dst, sector: 0n }]),
      RangeError,
      /exceeds device size/,
    ],
    [
      "destination past the end",
      () => kc.copy({ device: src, sector: 0n, count: 8n }, [{ device: dst, sector: S - 4n }]),
      RangeError,
      /exceeds device size/,
    ],
    [
      "unequal counts",
      () =>
        kc.copy({ device: src, sector: 0n, count: 8n }, [{ device: dst, sector: 0n, count: 9n }]),
      RangeError,
      /must equal the source count/,
    ],
    [
      "overlap through another descriptor",
      () => kc.copy({ device: src, sector: 0n, count: 8n }, [{ device: srcAgain, sector: 4n }]),
      RangeError,
      /overlap/,
    ],
    [
      "overlap through a symlink",
      () => kc.copy({ device: src, sector: 10n, count: 8n }, [{ device: viaLink, sector: 17n }]),
      RangeError,
      /overlap/,
    ],
    [
      "destinations overlapping each other",
      () =>
        kc.copy({ device: src, sector: 0n, count: 8n }, [{ device: dst, sector: 0n }, {
          device: dst,
          sector: 7n,
        }]),
      RangeError,
      /overlap/,
    ],
    [
      "too many destinations",
      () =>
        kc.copy(
          { device: src, sector: 0n, count: 1n },
          Array.from({ length: 9 }, (_, i) => ({ device: dst, sector: BigInt(i) })),
        ),
      RangeError,
      /Too many destinations: 9 > 8/,
    ],
    [
      "no destinations",
      () => kc.copy({ device: src, sector: 0n, count: 1n }, []),
      RangeError,
      /At least one/,
    ],
    [
      "negative sector",
      () => kc.copy({ device: src, sector: -1n, count: 1n }, [{ device: dst, sector: 0n }]),
      RangeError,
      /negative/,
    ],
    [
      "unsafe number",
      () => kc.copy({ device: src, sector: 2 ** 60, count: 1 }, [{ device: dst, sector: 0 }]),
      RangeError,
      /safe integer/,
    ],
    [
      "not a region",
      () => kc.copy("disk" as never, [{ device: dst, sector: 0n }]),
      TypeError,
      /must be a region/,
    ],
    [
      "not a device",
      () => kc.copy({ device: {} as never, sector: 0n, count: 1n }, [{ device: dst, sector: 0n }]),
      TypeError,
      /openDevice/,
    ],
    [
      "read-only destination",
      () => kc.copy({ device: src, sector: 0n, count: 8n }, [{ device: dstRo, sector: 0n }]),
      TypeError,
      /read-only/,
    ],
    [
      "zero on a read-only device",
      () => kc.zero([{ device: dstRo, sector: 0n, count: 8n }]),
      TypeError,
      /read-only/,
    ],
    [
      "bad flags",
      () =>
        kc.copy({ device: src, sector: 0n, count: 8n }, [{ device: dst, sector: 0n }], {
          flags: 64,
        }),
      TypeError,
      /flags/,
    ],
  ];
  for (const [name, run, type, message] of cases) {
    let p: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      p = run();
    }, name);
    await assert.rejects(p!, (e: Error) => {
      assert.equal(e.constructor, type, `${name}: ${e}`);
      assert.match(e.message, message, name);
      return true;
    });
  }
  // Nothing was written by any refused job; disjoint ranges in one file are fine.
  assert.ok((await Deno.readFile(dstPath)).every((b) => b === 0x55));
  const r = await kc.copy({ device: src, sector: 0n, count: 8n }, [{
    device: srcAgain,
    sector: 8n,
  }]);
  assert.equal(r.writeErr, 0);
  const s = await Deno.readFile(srcPath);
  assert.deepEqual(s.subarray(4096, 8192), s.subarray(0, 4096));
  // maxDestinations raises the limit to 32, not beyond.
  await using wide = await KcopydClient.create({ pages: 16, maxDestinations: 32 });
  const r32 = await wide.copy(
    { device: src, sector: 0n, count: 1n },
    Array.from({ length: 32 }, (_, i) => ({ device: dst, sector: BigInt(i) })),
  );
  assert.equal(r32.writeErr, 0);
  await assert.rejects(KcopydClient.create({ maxDestinations: 33 }), RangeError);
  await assert.rejects(KcopydClient.create({ subJobSize: 6000 }), /multiple of 4096/);
});

Deno.test("a bytes/s throttle holds the copy rate near the limit", async () => {
  await using files = new Files();
  const bytes = 8 << 20;
  const src = await files.open(await randomFile(bytes));
  const dst = await files.open(await patternFile(bytes, 0), true);
  const throttle = new Throttle({ bytesPerSecond: 32 << 20 });
  await using kc = await KcopydClient.create({ pages: 64, throttle });
  const t0 = performance.now();
  const r = await kc.copy({ device: src, sector: 0n, count: BigInt(bytes / 512) }, [
    { device: dst, sector: 0n },
  ]);
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(r.writeErr, 0);
  const rate = bytes / seconds;
  // 8 MiB at 32 MiB/s: at least ~0.2 s (the first chunk goes at once).
  assert.ok(rate < (32 << 20) * 1.25, `rate ${(rate / 2 ** 20).toFixed(1)} MiB/s`);
});

Deno.test("WRITE_SEQ copies byte-exact and clears IGNORE_ERROR", async () => {
  await using files = new Files();
  const bytes = 6 << 20;
  const srcPath = await randomFile(bytes);
  const dstPath = await patternFile(bytes, 0);
  const src = await files.open(srcPath);
  const dst = await files.open(dstPath, true);
  await using kc = await KcopydClient.create({ pages: 128, subJobSize: 64 << 10 });
  const r = await kc.copy({ device: src, sector: 0n, count: BigInt(bytes / 512) }, [
    { device: dst, sector: 0n },
  ], { flags: KcopydFlags.WRITE_SEQ | KcopydFlags.IGNORE_ERROR });
  assert.equal(r.writeErr, 0);
  assert.equal(sha(await Deno.readFile(dstPath)), sha(await Deno.readFile(srcPath)));
});
