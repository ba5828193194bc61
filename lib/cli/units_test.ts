import assert from "node:assert/strict";
import { formatBytes, parseBytes, parseSectors } from "./units.ts";

Deno.test("parseBytes() knows binary and decimal units", () => {
  const cases: [string, bigint][] = [
    ["0", 0n],
    ["100", 100n],
    ["512B", 512n],
    ["512K", 524288n],
    ["1KiB", 1024n],
    ["4M", 4n << 20n],
    ["4MiB", 4n << 20n],
    ["2G", 2n << 30n],
    ["2GiB", 2n << 30n],
    ["1T", 1n << 40n],
    ["1TiB", 1n << 40n],
    ["1KB", 1000n],
    ["3MB", 3_000_000n],
    ["1GB", 1_000_000_000n],
    ["2TB", 2_000_000_000_000n],
  ];
  for (const [text, want] of cases) assert.equal(parseBytes(text, "x"), want, text);
});

Deno.test("parseBytes() refuses what is not a size, naming the option", () => {
  assert.throws(() => parseBytes("1.5G", "--memory"), /--memory: "1.5G" is not a size/);
  assert.throws(() => parseBytes("-1", "--memory"), /is not a size/);
  assert.throws(() => parseBytes("12Q", "--rate"), /--rate: unknown unit "Q" in "12Q"/);
  assert.throws(() => parseBytes("", "--rate"), /is not a size/);
});

Deno.test("parseSectors(): plain numbers are sectors, sizes must be whole sectors", () => {
  assert.equal(parseSectors("2048", "s"), 2048n);
  assert.equal(parseSectors("512K", "s"), 1024n);
  assert.equal(parseSectors("512KB", "s"), 1000n);
  assert.throws(() => parseSectors("1MB", "s"), /1000000 bytes, not a whole number/);
  assert.throws(() => parseSectors("1000B", "count"), /count: "1000B" is 1000 bytes, not a whole/);
  assert.throws(() => parseSectors("4KB", "count"), /4000 bytes/);
});

Deno.test("formatBytes() prints binary units with three significant digits", () => {
  assert.equal(formatBytes(100), "100 B");
  assert.equal(formatBytes(1536), "1.50 KiB");
  assert.equal(formatBytes(32 << 20), "32.0 MiB");
  assert.equal(formatBytes(512 << 20), "512 MiB");
  assert.equal(formatBytes(2 ** 40), "1.00 TiB");
});
