// Ring cost per operation: NOPs and 4 KiB O_DIRECT reads, 1 000 in flight per iteration.
// Per-op cost = the reported time per iteration / 1 000. `deno task bench` prints waits per
// 1 000 I/Os at the end (batching keeps it far below 1 000).
import { cString, libc, O } from "../ffi/libc.ts";
import { BufferPool, Op, prepNop, prepRead, prepReadFixed, Ring } from "../lib/uring.ts";

const BATCH = 1000;
const FILE_BYTES = 64 << 20;

// tmpfs: the reads hit memory, so the figures are the ring's cost, not a disk's.
const path = await Deno.makeTempFile({ dir: "/dev/shm", prefix: "kcopyd-bench-" });
{
  const chunk = new Uint8Array(1 << 20).fill(0x5a);
  using f = await Deno.open(path, { write: true });
  for (let i = 0; i < FILE_BYTES; i += chunk.length) await f.write(chunk);
}
let fd = libc().open(cString(path), O.RDONLY | O.DIRECT | O.CLOEXEC, 0);
if (fd < 0) fd = libc().open(cString(path), O.RDONLY | O.CLOEXEC, 0); // tmpfs before Linux 6.6
const pool = new BufferPool(BATCH, 4096);
const offsets = Array.from(
  { length: BATCH },
  () => Math.floor(Math.random() * (FILE_BYTES / 4096)) * 4096,
);

const rings = {
  worker: Ring.create({ entries: 256, cqEntries: 2048 }),
  batched: Ring.create({ entries: 256, cqEntries: 2048, waitBatch: 16 }),
  inline: Ring.create({ entries: 256, cqEntries: 2048, waitMode: "inline" }),
  fixed: Ring.create({ entries: 256, cqEntries: 2048 }),
};
rings.fixed.registerBuffers(pool.iovecs());

function nops(ring: Ring): Promise<void> {
  return new Promise((resolve) => {
    let left = BATCH;
    for (let i = 0; i < BATCH; i++) ring.queue((s) => prepNop(s), () => --left === 0 && resolve());
  });
}

function reads(ring: Ring, fixed: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = BATCH;
    for (let i = 0; i < BATCH; i++) {
      const b = pool.get(i);
      const off = offsets[i];
      ring.queue(
        fixed
          ? (s) => prepReadFixed(s, fd, b.address, 4096, off, b.index)
          : (s) => prepRead(s, fd, b.address, 4096, off),
        (res) => {
          if (res !== 4096) reject(new Error(`read returned ${res}`));
          if (--left === 0) resolve();
        },
      );
    }
  });
}

/** The same reads through `queueRw`: no prep closure, one shared completion callback. */
function readsRw(ring: Ring): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = BATCH;
    const done = (res: number) => {
      if (res !== 4096) reject(new Error(`read returned ${res}`));
      if (--left === 0) resolve();
    };
    for (let i = 0; i < BATCH; i++) {
      ring.queueRw(Op.READ, fd, pool.get(i).address, 4096, offsets[i], 0, done);
    }
  });
}

for (const [name, ring] of Object.entries(rings)) {
  Deno.bench(`1000 NOPs, callback form, wait=${name}`, { group: "nop" }, async () => {
    await nops(ring);
  });
  const label = name === "fixed" ? "wait=worker, fixed buffers" : `wait=${name}`;
  Deno.bench(`1000 4 KiB reads, ${label}`, { group: "read" }, async () => {
    await reads(ring, name === "fixed");
  });
}
for (const name of ["worker", "inline"] as const) {
  Deno.bench(`1000 4 KiB reads, queueRw, wait=${name}`, { group: "read" }, async () => {
    await readsRw(rings[name]);
  });
}
Deno.bench("1000 NOPs, promise form, wait=worker", { group: "nop" }, async () => {
  const r = rings.worker;
  await Promise.all(Array.from({ length: BATCH }, () => r.run((s) => prepNop(s))));
});

globalThis.addEventListener("unload", () => {
  for (const [name, ring] of Object.entries(rings)) {
    const s = ring.stats;
    console.log(
      `wait=${name}: ${(s.waits / s.completions * 1000).toFixed(1)} waits and ` +
        `${(s.submits / s.completions * 1000).toFixed(1)} submits per 1000 I/Os`,
    );
  }
  libc().close(fd);
  Deno.removeSync(path);
});
