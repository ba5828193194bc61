import assert from "node:assert/strict";
import { Throttle } from "./throttle.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("a bytes/s throttle spaces admissions by size / rate", async () => {
  const t = new Throttle({ bytesPerSecond: 10 << 20 }); // 10 MiB/s
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) await t.admit(1 << 20); // 5 MiB: the first goes at once
  const ms = performance.now() - t0;
  assert.ok(ms >= 380 && ms < 1000, `took ${ms.toFixed(0)} ms, expected ~400`);
});

Deno.test("a busy-time throttle at 50 % waits as long as the devices were busy", async () => {
  const t = new Throttle({ percent: 50 });
  t.begin();
  await sleep(100); // 100 ms of I/O in flight
  t.end();
  const t0 = performance.now();
  await t.admit(4096);
  const waited = performance.now() - t0;
  assert.ok(waited >= 70 && waited < 300, `waited ${waited.toFixed(0)} ms, expected ~100`);
  const free = new Throttle();
  assert.ok(free.unlimited);
  assert.throws(() => new Throttle({ percent: 0 }), RangeError);
  assert.throws(() => new Throttle({ bytesPerSecond: -1 }), RangeError);
});
