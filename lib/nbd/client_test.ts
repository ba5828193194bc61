// The NBD client against a scripted in-process server (fake_server_test.ts): reply matching,
// chunked and out-of-order replies, splitting, flush ordering, errors, timeouts and refusals.
import assert from "node:assert/strict";
import { DeviceError } from "../device_error.ts";
import { openNbd } from "./device.ts";
import { startFakeServer } from "./fake_server_test.ts";
import { Cmd, Flag } from "./protocol.ts";
import { parseNbdUri } from "./uri.ts";

const KiB = 1024;

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

for (const structured of [true, false]) {
  Deno.test(`replies in any order land in the right buffers (${structured ? "structured, data and hole chunks" : "simple replies"})`, async () => {
    await using srv = await startFakeServer({ size: 1 << 20, structured });
    await using dev = await openNbd(srv.uri, { write: true });
    assert.equal(dev.features.structuredReplies, structured);
    const want = pattern(1 << 20, 1);
    want.fill(0, 100 * KiB, 300 * KiB); // holes inside some reads
    const writes = [];
    for (let at = 0; at < want.length; at += 16 * KiB) {
      writes.push(dev.pwrite(want.subarray(at, at + 16 * KiB), at));
    }
    assert.ok(dev.inFlight > 8, "many requests in flight at once");
    assert.deepEqual(new Set(await Promise.all(writes)), new Set([16 * KiB]));
    const got = new Uint8Array(want.length).fill(0xaa);
    const reads = [];
    for (let at = 0; at < want.length; at += 48 * KiB) {
      reads.push(dev.pread(got.subarray(at, Math.min(at + 48 * KiB, got.length)), at));
    }
    await Promise.all(reads);
    assert.ok(got.every((b, i) => b === want[i]), "every byte where it belongs");
    assert.ok(srv.counts.get(Cmd.READ)! >= 22);
  });
}

Deno.test("requests above the server's maximum block size are split; its minimum is the logical block size", async () => {
  await using srv = await startFakeServer({
    size: 4 << 20,
    blockSize: [4096, 16384, 64 * KiB],
    strictMax: true,
  });
  await using dev = await openNbd(srv.uri, { write: true });
  assert.equal(dev.logicalBlockSize, 4096);
  assert.equal(dev.physicalBlockSize, 16384);
  assert.equal(dev.maxRequest, 64 * KiB);
  const data = pattern(3 << 20, 2);
  assert.equal(await dev.pwrite(data, 4096), data.length);
  const back = new Uint8Array(data.length);
  assert.equal(await dev.pread(back, 4096), data.length);
  assert.deepEqual(back, data);
  assert.ok(srv.maxSeen <= 64 * KiB, `largest request ${srv.maxSeen}`);
});

Deno.test("flush() is sent only after every earlier write is answered on every connection", async () => {
  await using srv = await startFakeServer({ size: 1 << 20 });
  await using dev = await openNbd(srv.uri, { write: true, connections: 4 });
  assert.equal(dev.connectionCount, 4);
  const data = pattern(1 << 20, 3);
  const writes = [];
  for (let at = 0; at < data.length; at += 32 * KiB) {
    writes.push(dev.pwrite(data.subarray(at, at + 32 * KiB), at));
  }
  assert.equal(await dev.flush(), 0);
  await Promise.all(writes);
  assert.equal(srv.flushViolations, 0);
  assert.equal(srv.counts.get(Cmd.FLUSH), 1, "with multi-conn one flush covers every connection");
});

Deno.test("server errors become negative errno values; unknown ones become EIO", async () => {
  for (const structured of [true, false]) {
    await using srv = await startFakeServer({
      structured,
      fault: (cmd, offset) =>
        cmd === Cmd.WRITE && offset >= 512 * KiB
          ? 28
          : cmd === Cmd.READ && offset === 0
          ? 9999
          : undefined,
    });
    await using dev = await openNbd(srv.uri, { write: true });
    const buf = new Uint8Array(4096);
    assert.equal(await dev.pwrite(buf, 0), 4096);
    assert.equal(await dev.pwrite(buf, 512 * KiB), -28);
    assert.equal(await dev.pread(buf, 0), -5);
    assert.equal(await dev.pread(buf, 4096), 4096, "the connection carries on");
    assert.equal(await dev.pread(buf, 1 << 20), -22, "past the end: refused without a request");
  }
});

Deno.test("a server that drops the connection fails every request in flight (ENOTCONN), later ones too", async () => {
  await using srv = await startFakeServer({
    flags: Flag.SEND_FLUSH,
    reorder: false,
    fault: (cmd, offset) => (cmd === Cmd.READ && offset === 64 * KiB ? "drop" : undefined),
  });
  await using dev = await openNbd(srv.uri);
  const buf = new Uint8Array(1 << 20);
  const reads = [];
  for (let at = 0; at < buf.length; at += 16 * KiB) {
    reads.push(dev.pread(buf.subarray(at, at + 16 * KiB), at));
  }
  const res = await Promise.all(reads);
  assert.ok(res.some((r) => r === -107), JSON.stringify(res));
  assert.ok(res.every((r) => r === -107 || r === 16 * KiB));
  assert.equal(await dev.pread(buf.subarray(0, 512), 0), -107);
});

Deno.test("garbage from the server fails the connection with EIO", async () => {
  await using srv = await startFakeServer({
    fault: (cmd, offset) => (cmd === Cmd.READ && offset === 4096 ? "garbage" : undefined),
  });
  await using dev = await openNbd(srv.uri, { connections: 1 });
  const buf = new Uint8Array(4096);
  assert.equal(await dev.pread(buf, 4096), -5);
  assert.equal(await dev.pread(buf, 0), -5);
});

Deno.test("a request left unanswered fails with ETIMEDOUT after ioTimeoutMs", async () => {
  await using srv = await startFakeServer({
    fault: (cmd, offset) => (cmd === Cmd.READ && offset === 0 ? "hang" : undefined),
  });
  await using dev = await openNbd(srv.uri, { connections: 1, ioTimeoutMs: 200 });
  const t0 = performance.now();
  const res = await dev.pread(new Uint8Array(4096), 0);
  const ms = performance.now() - t0;
  assert.equal(res, -110);
  assert.ok(ms >= 200 && ms < 2000, `${ms} ms`);
});

Deno.test("opening fails with one clear DeviceError: silent server (ETIMEDOUT), unknown export (ENXIO), read-only (EROFS)", async () => {
  {
    await using silent = await startFakeServer({ silent: true });
    const t0 = performance.now();
    await assert.rejects(
      openNbd(silent.uri, { connectTimeoutMs: 200 }),
      (e) => e instanceof DeviceError && e.code === "ETIMEDOUT" && /within 200 ms/.test(e.message),
    );
    assert.ok(performance.now() - t0 < 2000);
  }
  {
    await using named = await startFakeServer({ exportName: "disk" });
    await assert.rejects(
      openNbd(named.uri.replace("/disk?", "/other?")),
      (e) =>
        e instanceof DeviceError && e.code === "ENXIO" &&
        /no export named "other"/.test(e.message) && !e.message.includes("\n"),
    );
    await using ok = await openNbd(named.uri);
    assert.equal(ok.sizeBytes, 1048576n);
  }
  {
    await using ro = await startFakeServer({ flags: Flag.READ_ONLY | Flag.SEND_FLUSH });
    await assert.rejects(
      openNbd(ro.uri, { write: true }),
      (e) => e instanceof DeviceError && e.code === "EROFS",
    );
    await using r = await openNbd(ro.uri);
    assert.equal(r.writable, false);
    assert.equal(r.connectionCount, 1, "no multi-conn: one connection");
  }
});

Deno.test("blockStatus() reports data and zero extents; trim() and zero() clear exactly their range", async () => {
  await using srv = await startFakeServer({
    size: 256 * KiB,
    flags: Flag.SEND_TRIM | Flag.SEND_WRITE_ZEROES | Flag.SEND_FLUSH,
  });
  await using dev = await openNbd(srv.uri, { write: true });
  assert.ok(dev.features.blockStatus);
  await dev.pwrite(pattern(64 * KiB, 4), 64 * KiB);
  assert.deepEqual(await dev.blockStatus(0, 256 * KiB), [
    { length: 64 * KiB, flags: 3 },
    { length: 64 * KiB, flags: 0 },
    { length: 128 * KiB, flags: 3 },
  ]);
  assert.equal(await dev.trim(64 * KiB, 4096), 0);
  assert.equal(await dev.zero(124 * KiB, 4096), 4096);
  assert.equal(await dev.zero(0, 4096, { fast: true }), -95, "fast zero not offered");
  const back = new Uint8Array(64 * KiB);
  await dev.pread(back, 64 * KiB);
  const want = pattern(64 * KiB, 4);
  want.fill(0, 0, 4096);
  want.fill(0, 60 * KiB);
  assert.deepEqual(back, want);
});

Deno.test("close() waits for every answer, then disconnects; safe to call twice", async () => {
  await using srv = await startFakeServer({ size: 1 << 20 });
  const dev = await openNbd(srv.uri, { write: true });
  const data = pattern(1 << 20, 5);
  const writes = [];
  for (let at = 0; at < data.length; at += 64 * KiB) {
    writes.push(dev.pwrite(data.subarray(at, at + 64 * KiB), at));
  }
  await Promise.all([dev.close(), dev.close()]);
  assert.ok(dev.closed);
  assert.deepEqual(new Set(await Promise.all(writes)), new Set([64 * KiB]));
  assert.equal(srv.abandoned, 0, "no request was in flight at disconnect");
  assert.deepEqual(srv.data, data);
  assert.equal(await dev.pread(new Uint8Array(512), 0), -22, "closed");
});

Deno.test("servers without NBD_OPT_GO are opened with NBD_OPT_EXPORT_NAME", async () => {
  await using srv = await startFakeServer({ noGo: true, structured: false });
  await using dev = await openNbd(srv.uri, { write: true });
  assert.equal(dev.sizeBytes, 1048576n);
  assert.equal(dev.logicalBlockSize, 512);
  const data = pattern(8192, 6);
  assert.equal(await dev.pwrite(data, 8192), 8192);
  const back = new Uint8Array(8192);
  assert.equal(await dev.pread(back, 8192), 8192);
  assert.deepEqual(back, data);
});

Deno.test("the device id is nbd: and the normalized URI", () => {
  assert.equal(parseNbdUri("nbd://Backup/disk").id, "nbd:nbd://backup:10809/disk");
  assert.equal(parseNbdUri("nbd://backup:10809/di%73k").id, "nbd:nbd://backup:10809/disk");
  assert.equal(parseNbdUri("nbd://[::1]:1234/").id, "nbd:nbd://[::1]:1234/");
  assert.equal(
    parseNbdUri("nbd+unix:///a%20b?socket=/run/n.sock").id,
    "nbd:nbd+unix:///a%20b?socket=/run/n.sock",
  );
  assert.equal(parseNbdUri("nbd+unix:///a%20b?socket=/run/n.sock").exportName, "a b");
  assert.throws(() => parseNbdUri("nbd+unix:///x"), TypeError);
  assert.throws(() => parseNbdUri("nbd:///x"), TypeError);
  assert.throws(() => parseNbdUri("nbds+unix:///x?socket=/s"), /TLS over a Unix socket/);
  assert.deepEqual(parseNbdUri("nbds://H:99/x?tls-certificates=/pki").tls, {
    hostname: "h",
    certificates: "/pki",
  });
  assert.equal(parseNbdUri("nbds://h:99/x").id, "nbd:nbd://h:99/x");
});
