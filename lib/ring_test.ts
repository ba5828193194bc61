import assert from "node:assert/strict";
import { randomFillSync } from "node:crypto";
import { cString, libc, O } from "../ffi/libc.ts";
import { allocNative, freeNative } from "./native.ts";
import {
  BufferPool,
  Falloc,
  Op,
  prepFallocate,
  prepFsync,
  prepNop,
  prepRead,
  prepReadFixed,
  prepReadv,
  prepWrite,
  prepWriteFixed,
  prepWritev,
  Ring,
  type RwOp,
  SqeFlag,
  sqeSetFlags,
  UringError,
} from "./uring.ts";

/** A temp file on a filesystem that supports O_DIRECT (tmpfs does not). */
async function tempFile(bytes: number): Promise<string> {
  const path = await Deno.makeTempFile({ dir: "/var/tmp", prefix: "kcopyd-ring-" });
  await Deno.truncate(path, bytes);
  return path;
}

function openFd(path: string, flags: number): number {
  const fd = libc().open(cString(path), flags | O.CLOEXEC, 0o644);
  assert.ok(fd >= 0, `open ${path}`);
  return fd;
}

Deno.test("a NOP storm of 100 000 ops completes on a ring far smaller than the load", async () => {
  await using ring = Ring.create({ entries: 32 });
  const N = 100_000;
  let ok = 0;
  let bad = 0;
  const all = new Promise<void>((resolve) => {
    let left = N;
    for (let i = 0; i < N; i++) {
      ring.queue((sqe) => prepNop(sqe), (res) => {
        if (res === 0) ok++;
        else bad++;
        if (--left === 0) resolve();
      });
    }
  });
  assert.ok(ring.queued > 0, "operations beyond the ring's room wait in JS");
  assert.equal(ok, 0, "no completion runs inside queue()");
  await all;
  assert.equal(ok, N);
  assert.equal(bad, 0);
  assert.equal(ring.inflight, 0);
  assert.equal(ring.stats.completions, N);
  assert.ok(ring.stats.waits < N / 10, `waits ${ring.stats.waits} are batched`);
});

Deno.test("promise-form NOPs resolve with 0", async () => {
  await using ring = Ring.create({ entries: 16 });
  const results = await Promise.all(
    Array.from({ length: 5000 }, () => ring.run((sqe) => prepNop(sqe))),
  );
  assert.equal(results.length, 5000);
  assert.ok(results.every((r) => r === 0));
});

Deno.test("write then read through the ring round-trips bytes at an offset", async () => {
  const path = await tempFile(4 << 20);
  await using ring = Ring.create({ entries: 64 });
  using pool = new BufferPool(2, 1 << 20);
  const fd = openFd(path, O.RDWR | O.DIRECT);
  try {
    const src = pool.get(0);
    randomFillSync(src.bytes);
    const offset = 3 * 4096 + (1 << 20);
    assert.equal(await ring.run((s) => prepWrite(s, fd, src.address, 1 << 20, offset)), 1 << 20);
    const dst = pool.get(1);
    assert.equal(await ring.run((s) => prepRead(s, fd, dst.address, 1 << 20, offset)), 1 << 20);
    assert.deepEqual(dst.bytes, src.bytes);
    const onDisk = (await Deno.readFile(path)).subarray(offset, offset + (1 << 20));
    assert.deepEqual(onDisk, src.bytes);
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("fixed-buffer reads and writes use registered buffers", async () => {
  const path = await tempFile(1 << 20);
  await using ring = Ring.create({ entries: 64 });
  using pool = new BufferPool(8, 64 << 10);
  ring.registerBuffers(pool.iovecs());
  const fd = openFd(path, O.RDWR | O.DIRECT);
  try {
    for (let i = 0; i < 4; i++) randomFillSync(pool.get(i).bytes);
    await Promise.all([0, 1, 2, 3].map((i) => {
      const b = pool.get(i);
      return ring.run((s) => prepWriteFixed(s, fd, b.address, b.byteLength, i * b.byteLength, i));
    }));
    const n = await Promise.all([0, 1, 2, 3].map((i) => {
      const b = pool.get(4 + i);
      return ring.run((s) =>
        prepReadFixed(s, fd, b.address, b.byteLength, i * b.byteLength, b.index)
      );
    }));
    assert.deepEqual(n, [65536, 65536, 65536, 65536]);
    for (let i = 0; i < 4; i++) assert.deepEqual(pool.get(4 + i).bytes, pool.get(i).bytes);
    // A fixed read whose address lies outside the named buffer is refused by the kernel.
    await assert.rejects(
      ring.run((s) => prepReadFixed(s, fd, pool.get(1).address, 4096, 0, 0)),
      (e: unknown) => e instanceof UringError && e.code === "EFAULT",
    );
    ring.unregisterBuffers();
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("readv and writev move several buffers in one operation", async () => {
  const path = await tempFile(64 << 10);
  await using ring = Ring.create({ entries: 8 });
  using pool = new BufferPool(4, 4096);
  const iov = allocNative(4 * 16, 8);
  const fd = openFd(path, O.RDWR);
  try {
    const v = new DataView(iov.buffer);
    const setIov = (slot: number, b: number) => {
      v.setBigUint64(slot * 16, BigInt(pool.get(b).address), true);
      v.setBigUint64(slot * 16 + 8, 4096n, true);
    };
    randomFillSync(pool.get(0).bytes);
    randomFillSync(pool.get(1).bytes);
    setIov(0, 0);
    setIov(1, 1);
    assert.equal(await ring.run((s) => prepWritev(s, fd, iov.address, 2, 8192)), 8192);
    setIov(2, 2);
    setIov(3, 3);
    assert.equal(await ring.run((s) => prepReadv(s, fd, iov.address + 32, 2, 8192)), 8192);
    assert.deepEqual(pool.get(2).bytes, pool.get(0).bytes);
    assert.deepEqual(pool.get(3).bytes, pool.get(1).bytes);
  } finally {
    libc().close(fd);
    freeNative(iov);
    await Deno.remove(path);
  }
});

Deno.test("a linked write→fsync chain runs in order; a failed link cancels the rest", async () => {
  const path = await tempFile(8192);
  await using ring = Ring.create({ entries: 8 });
  using pool = new BufferPool(1, 4096);
  const fd = openFd(path, O.RDWR);
  try {
    const b = pool.get(0);
    randomFillSync(b.bytes);
    const res = await ring.runLinked([
      (s) => prepWrite(s, fd, b.address, 4096, 4096),
      (s) => prepFsync(s, fd),
    ]);
    assert.deepEqual(res, [4096, 0]);
    assert.deepEqual((await Deno.readFile(path)).subarray(4096), b.bytes);

    const got: number[] = [];
    await new Promise<void>((resolve) => {
      ring.queueLinked(
        [(s) => prepWrite(s, 987654, b.address, 4096, 0), (s) => prepFsync(s, fd)],
        [(r) => got.push(r), (r) => {
          got.push(r);
          resolve();
        }],
      );
    });
    assert.deepEqual(got, [-9, -125]); // EBADF, then ECANCELED
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("fallocate ZERO_RANGE through the ring zeroes exactly the range", async () => {
  const path = await tempFile(0);
  const data = new Uint8Array(64 << 10);
  randomFillSync(data);
  await Deno.writeFile(path, data);
  await using ring = Ring.create({ entries: 8 });
  const fd = openFd(path, O.RDWR);
  try {
    await ring.run((s) => prepFallocate(s, fd, Falloc.ZERO_RANGE, 8192, 16384));
    const after = await Deno.readFile(path);
    assert.equal(after.length, data.length);
    assert.ok(after.subarray(8192, 8192 + 16384).every((x) => x === 0));
    assert.deepEqual(after.subarray(0, 8192), data.subarray(0, 8192));
    assert.deepEqual(after.subarray(8192 + 16384), data.subarray(8192 + 16384));
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("errors carry errno, code and op: EBADF, and EINVAL for a misaligned O_DIRECT read", async () => {
  const path = await tempFile(0);
  await Deno.writeFile(path, new Uint8Array(1 << 20).fill(1)); // allocated: holes skip the check
  await using ring = Ring.create({ entries: 8 });
  using pool = new BufferPool(1, 8192);
  const fd = openFd(path, O.RDONLY | O.DIRECT);
  try {
    const b = pool.get(0);
    await assert.rejects(ring.run((s) => prepRead(s, 987654, b.address, 4096, 0)), (e) => {
      assert.ok(e instanceof UringError);
      assert.equal(e.errno, 9);
      assert.equal(e.code, "EBADF");
      assert.equal(e.op, "read");
      assert.match(e.message, /EBADF/);
      return true;
    });
    await assert.rejects(ring.run((s) => prepRead(s, fd, b.address + 1, 4096, 1)), (e) => {
      assert.ok(e instanceof UringError);
      assert.equal(e.errno, 22);
      assert.equal(e.code, "EINVAL");
      return true;
    });
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("close() while I/O is in flight completes every operation, then refuses new work", async () => {
  const path = await tempFile(8 << 20);
  const ring = Ring.create({ entries: 32 });
  using pool = new BufferPool(64, 64 << 10);
  const fd = openFd(path, O.RDONLY | O.DIRECT);
  try {
    const results: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const b = pool.get(i % 64);
      ring.queue(
        (s) => prepRead(s, fd, b.address, b.byteLength, (i % 128) * b.byteLength),
        (res) => results.push(res),
      );
    }
    const closing = ring.close();
    await Promise.all([closing, ring.close()]);
    // Everything either ran (64 KiB read) or was canceled before reaching the kernel.
    assert.equal(results.length, 1000);
    assert.ok(results.every((r) => r === 65536 || r === -125), `results ${new Set(results)}`);
    assert.ok(ring.closed);
    await assert.rejects(ring.run((s) => prepNop(s)), /Ring is closed/);
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("an idle ring does not keep the process alive", async () => {
  const script = `
    import { prepNop, Ring } from ${JSON.stringify(new URL("./uring.ts", import.meta.url).href)};
    const ring = Ring.create({ entries: 4 });
    console.log(await ring.run((s) => prepNop(s)));
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const out = await child.output();
  clearTimeout(timer);
  assert.equal(new TextDecoder().decode(out.stderr), "");
  assert.equal(out.code, 0, "exits by itself with an unclosed but idle ring");
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "0");
});

Deno.test("inline wait mode completes a NOP storm and real reads, and keeps timers running", async () => {
  await using ring = Ring.create({ entries: 32, waitMode: "inline", inlineWaitUs: 500 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const N = 50_000;
  const results = await Promise.all(
    Array.from({ length: N }, () => ring.run((sqe) => prepNop(sqe))),
  );
  assert.equal(results.length, N);
  assert.ok(results.every((r) => r === 0));
  const path = await tempFile(0);
  const data = new Uint8Array(1 << 20);
  randomFillSync(data);
  await Deno.writeFile(path, data);
  using pool = new BufferPool(16, 65536);
  const fd = openFd(path, O.RDONLY | O.DIRECT);
  try {
    const n = await Promise.all(Array.from({ length: 16 }, (_, i) => {
      const b = pool.get(i);
      return ring.run((s) => prepRead(s, fd, b.address, 65536, i * 65536));
    }));
    assert.ok(n.every((x) => x === 65536));
    assert.deepEqual(pool.bytes, data);
    await new Promise((r) => setTimeout(r, 5));
    assert.ok(ticks > 0, "the event loop still runs timers");
  } finally {
    clearInterval(timer);
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("registered files: I/O names the file by index with IOSQE_FIXED_FILE", async () => {
  const path = await tempFile(0);
  const data = new Uint8Array(8192);
  randomFillSync(data);
  await Deno.writeFile(path, data);
  await using ring = Ring.create({ entries: 8 });
  using pool = new BufferPool(1, 8192);
  const fd = openFd(path, O.RDONLY);
  try {
    ring.registerFiles([fd]);
    const b = pool.get(0);
    const n = await ring.run((s) => {
      prepRead(s, 0, b.address, 8192, 0); // 0: the index, not a descriptor
      sqeSetFlags(s, SqeFlag.FIXED_FILE);
    });
    assert.equal(n, 8192);
    assert.deepEqual(b.bytes, data);
    // Index 1 was never registered.
    await assert.rejects(
      ring.run((s) => {
        prepRead(s, 1, b.address, 4096, 0);
        sqeSetFlags(s, SqeFlag.FIXED_FILE);
      }),
      (e: unknown) => e instanceof UringError && e.code === "EBADF",
    );
    ring.unregisterFiles();
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("queueRw fills reads and writes without a prep, also when they must wait for room", async () => {
  const path = await tempFile(1 << 20);
  // 4 SQ entries and 8 CQ entries for 64 operations: most of them queue in JS first.
  await using ring = Ring.create({ entries: 4, cqEntries: 8 });
  using pool = new BufferPool(64, 4096);
  ring.registerBuffers(pool.iovecs());
  const fd = openFd(path, O.RDWR | O.DIRECT);
  const all = (op: number, first: number) =>
    Promise.all(Array.from({ length: 32 }, (_, i) =>
      new Promise<number>((resolve) => {
        const b = pool.get(first + i);
        ring.queueRw(op, fd, b.address, 4096, i * 4096, b.index, resolve);
      })));
  try {
    for (let i = 0; i < 32; i++) randomFillSync(pool.get(i).bytes);
    assert.deepEqual(await all(Op.WRITE_FIXED, 0), new Array(32).fill(4096));
    assert.deepEqual(await all(Op.READ, 32), new Array(32).fill(4096));
    for (let i = 0; i < 32; i++) assert.deepEqual(pool.get(32 + i).bytes, pool.get(i).bytes);
    // A fixed read from a buffer other than the one named is refused by the kernel.
    const res = await new Promise<number>((resolve) =>
      ring.queueRw(Op.READ_FIXED, fd, pool.get(1).address, 4096, 0, 0, resolve)
    );
    assert.equal(res, -14); // EFAULT
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("queueRwLinked runs the second op only after the first, also from the JS queue", async () => {
  const path = await tempFile(1 << 20);
  // 8 CQ entries for 12 linked pairs: most pairs wait in JS, and must stay pairs.
  await using ring = Ring.create({ entries: 4, cqEntries: 8 });
  using pool = new BufferPool(25, 4096);
  const fd = openFd(path, O.RDWR | O.DIRECT);
  try {
    const pairs = Array.from({ length: 12 }, (_, i) => {
      const src = pool.get(i);
      const dst = pool.get(12 + i);
      randomFillSync(src.bytes);
      return new Promise<[number, number]>((resolve) => {
        // Write a block, then read it back into another buffer: only right if ordered.
        ring.queueRwLinked(
          { op: Op.WRITE, fd, addr: src.address, len: 4096, offset: i * 4096 },
          { op: Op.READ, fd, addr: dst.address, len: 4096, offset: i * 4096 },
          (w, r) => resolve([w, r]),
        );
      });
    });
    assert.deepEqual(await Promise.all(pairs), new Array(12).fill([4096, 4096]));
    for (let i = 0; i < 12; i++) assert.deepEqual(pool.get(12 + i).bytes, pool.get(i).bytes);
    // A failed first op cancels the second.
    const spare = pool.get(24);
    const failed = await new Promise<[number, number]>((resolve) =>
      ring.queueRwLinked(
        { op: Op.READ, fd: -1, addr: spare.address, len: 4096, offset: 0 },
        { op: Op.WRITE, fd, addr: spare.address, len: 4096, offset: 0 },
        (r, w) => resolve([r, w]),
      )
    );
    assert.deepEqual(failed, [-9, -125]); // EBADF, then ECANCELED
    // Pairs and single operations share the tokens: after many of both, nothing is left over.
    await Promise.all(Array.from({ length: 40 }, (_, i) =>
      new Promise<void>((resolve) => {
        const b = pool.get(i % 12);
        if (i % 2) ring.queueRw(Op.READ, fd, b.address, 4096, 0, 0, () => resolve());
        else {
          ring.queueRwLinked(
            { op: Op.READ, fd, addr: b.address, len: 4096, offset: 0 },
            { op: Op.READ, fd, addr: b.address, len: 4096, offset: 4096 },
            () => resolve(),
          );
        }
      })));
    assert.equal(ring.inflight, 0);
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});

Deno.test("queueRwLinked: a short first op cancels the second; a pair refused at submission completes once", async () => {
  const path = await tempFile(1 << 20);
  await using ring = Ring.create({ entries: 8 });
  using pool = new BufferPool(4, 8192);
  const fd = openFd(path, O.RDWR | O.DIRECT);
  const pair = (a: RwOp, b: RwOp) =>
    new Promise<[number, number]>((resolve) => ring.queueRwLinked(a, b, (x, y) => resolve([x, y])));
  try {
    const [b0, b1] = [pool.get(0), pool.get(1)];
    // 8 KiB asked for, 4 KiB left before the end of the file: a short read breaks the link.
    const short = await pair(
      { op: Op.READ, fd, addr: b0.address, len: 8192, offset: (1 << 20) - 4096 },
      { op: Op.WRITE, fd, addr: b0.address, len: 8192, offset: 0 },
    );
    assert.deepEqual(short, [4096, -125]);
    // No buffers are registered, so the fixed write is refused before it runs.
    const refused = await pair(
      { op: Op.READ, fd, addr: b1.address, len: 4096, offset: 0 },
      { op: Op.WRITE_FIXED, fd, addr: b1.address, len: 4096, offset: 0, bufIndex: 3 },
    );
    assert.ok(refused[0] < 0 || refused[1] < 0, `the pair failed: ${refused}`);
    assert.equal(ring.inflight, 0);
    // The ring goes on working, and no late completion lands on a reused token.
    const again = await Promise.all(Array.from({ length: 16 }, (_, i) =>
      pair(
        { op: Op.READ, fd, addr: pool.get(i % 4).address, len: 4096, offset: 0 },
        { op: Op.READ, fd, addr: pool.get(i % 4).address, len: 4096, offset: 4096 },
      )));
    assert.deepEqual(again, new Array(16).fill([4096, 4096]));
    assert.equal(ring.inflight, 0);
  } finally {
    libc().close(fd);
    await Deno.remove(path);
  }
});
