import assert from "node:assert/strict";
import { renderProgress } from "./progress.ts";

Deno.test("renderProgress() shows done / total, percentage, rate and ETA", () => {
  const line = renderProgress(
    "copy",
    {
      done: 256 << 20,
      total: 1 << 30,
      errors: new Map(),
    },
    2,
    100,
  );
  assert.ok(line.startsWith("copy ["), line);
  assert.ok(line.endsWith("]  25.0% 256 MiB / 1.00 GiB  128 MiB/s  ETA 00:06"), line);
  assert.ok(line.length <= 100);
});

Deno.test("renderProgress() lists errors per destination and read errors", () => {
  const line = renderProgress("copy", {
    done: 10,
    total: 100,
    errors: new Map([[-1, 2], [1, 3]]),
  }, 1);
  assert.match(line, /read errors 2, dest 1: 3 errors$/);
});

Deno.test("renderProgress() has no ETA before anything is done and 100% when total is 0", () => {
  assert.match(renderProgress("zero", { done: 0, total: 100, errors: new Map() }, 0), /ETA --:--/);
  assert.match(renderProgress("zero", { done: 0, total: 0, errors: new Map() }, 1), /100\.0%/);
});
