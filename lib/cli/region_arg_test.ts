import assert from "node:assert/strict";
import { isUri, parseRegionArg } from "./region_arg.ts";
import { UsageError } from "./usage_error.ts";

const none = () => false;
const only = (...paths: string[]) => (p: string) => paths.includes(p);

Deno.test("parseRegionArg() takes a plain path whole", () => {
  assert.deepEqual(parseRegionArg("/dev/loop0", none), { path: "/dev/loop0" });
  assert.deepEqual(parseRegionArg("disk.img", none), { path: "disk.img" });
});

Deno.test("parseRegionArg() reads SECTOR and SECTOR+COUNT in sectors or with units", () => {
  assert.deepEqual(parseRegionArg("/dev/loop0:2048", none), { path: "/dev/loop0", sector: 2048n });
  assert.deepEqual(parseRegionArg("/dev/loop0:2048+1GiB", none), {
    path: "/dev/loop0",
    sector: 2048n,
    count: 2097152n,
  });
  assert.deepEqual(parseRegionArg("a.img:1M+512K", none), {
    path: "a.img",
    sector: 2048n,
    count: 1024n,
  });
  assert.deepEqual(parseRegionArg("a.img:0+16", none), { path: "a.img", sector: 0n, count: 16n });
  assert.deepEqual(parseRegionArg("a.img:1024B", none), { path: "a.img", sector: 2n });
});

Deno.test("parseRegionArg() uses the last colon", () => {
  assert.deepEqual(parseRegionArg("/srv/a:b/disk.img:8+8", none), {
    path: "/srv/a:b/disk.img",
    sector: 8n,
    count: 8n,
  });
});

Deno.test("parseRegionArg() takes a path that exists as written whole, colon and all", () => {
  assert.deepEqual(parseRegionArg("odd:8", only("odd:8")), { path: "odd:8" });
  assert.deepEqual(parseRegionArg("odd:8", only("odd")), { path: "odd", sector: 8n });
});

Deno.test("parseRegionArg() keeps a suffix that is not a region as part of the path", () => {
  assert.deepEqual(parseRegionArg("new:file.img", none), { path: "new:file.img" });
  assert.deepEqual(parseRegionArg("x.img:", none), { path: "x.img:" });
  assert.deepEqual(parseRegionArg("x.img:1+2+3", none), { path: "x.img:1+2+3" });
});

Deno.test("parseRegionArg() explains a bad region after an existing path", () => {
  assert.throws(() => parseRegionArg("x.img:4KB", only("x.img")), {
    name: "UsageError",
    message: /"4KB" is 4000 bytes, not a whole number of 512-byte sectors/,
  });
  assert.throws(() => parseRegionArg("x.img:8+3Q", only("x.img")), /unknown unit "Q"/);
  assert.throws(() => parseRegionArg("x.img:1+2+3", only("x.img")), /SECTOR\[\+COUNT\]/);
  assert.throws(() => parseRegionArg("", none), UsageError);
});

Deno.test("parseRegionArg() never takes an NBD host:port for a region", () => {
  assert.deepEqual(parseRegionArg("nbd://host:10809", none), { path: "nbd://host:10809" });
  assert.deepEqual(parseRegionArg("nbd://host:10809/", none), { path: "nbd://host:10809/" });
  assert.deepEqual(parseRegionArg("nbd://host:10809/disk:8+4MiB", none), {
    path: "nbd://host:10809/disk",
    sector: 8n,
    count: 8192n,
  });
  assert.deepEqual(parseRegionArg("nbd://host/:16", none), { path: "nbd://host/", sector: 16n });
  // A URI is never looked up on disk.
  assert.deepEqual(parseRegionArg("nbd://h/d:8", () => true), { path: "nbd://h/d", sector: 8n });
});

Deno.test("isUri() recognizes NBD URIs only", () => {
  assert.ok(isUri("nbd://h/x"));
  assert.ok(isUri("nbd+unix:///x?socket=/s"));
  assert.ok(!isUri("/dev/nbd0"));
  assert.ok(!isUri("nbd.img"));
});
