import assert from "node:assert/strict";
import { PagePool, type PageRun } from "./page_pool.ts";

Deno.test("acquireCb grants at once when pages are free, else in FIFO order with acquire()", async () => {
  using pool = new PagePool(8);
  const order: string[] = [];
  let first: PageRun | undefined;
  pool.acquireCb(6, (run) => first = run);
  assert.ok(first, "granted synchronously: the pool was free");
  assert.equal(pool.freePages, 2);
  // 4 pages do not fit; the 2-page request behind it must not overtake it.
  const runs: PageRun[] = [];
  pool.acquireCb(4, (run) => {
    order.push("cb4");
    runs.push(run);
  });
  const viaPromise = pool.acquire(2).then((run) => {
    order.push("promise2");
    runs.push(run);
  });
  pool.acquireCb(1, (run) => {
    order.push("cb1");
    runs.push(run);
  });
  assert.equal(order.length, 0);
  assert.equal(pool.waiting, 3);
  pool.release(first!);
  await viaPromise;
  // Granted in request order: the pages show it (a promise's then() itself runs later).
  const firstPage = (name: string) => runs[order.indexOf(name)].first;
  assert.deepEqual([firstPage("cb4"), firstPage("promise2"), firstPage("cb1")], [0, 4, 6]);
  assert.equal(pool.freePages, 1);
  for (const r of runs) pool.release(r);
  assert.equal(pool.freePages, 8);
  assert.throws(() => pool.acquireCb(9, () => {}), RangeError);
});
