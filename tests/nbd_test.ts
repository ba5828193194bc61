// Remote devices over NBD, against real nbdkit and qemu-nbd servers on Unix sockets.
import assert from "node:assert/strict";
import { DeviceError, KcopydClient, type NbdDevice, openDevice } from "../mod.ts";
import { makeImage, readRange, sha256, sha256File } from "./support/image.ts";
import { canUseNbdkit, startNbdkit, startQemuNbd } from "./support/nbd_server.ts";
import { hasCommand } from "./support/run.ts";

const { ok, reason } = await canUseNbdkit();
if (!ok) console.log(`skipping NBD tests: ${reason}`);
const hasQemuNbd = await hasCommand("qemu-nbd");
if (!hasQemuNbd) console.log("skipping the qemu-nbd test: qemu-nbd is missing (qemu-utils)");
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const MiB = 1 << 20;

async function remote(uri: string, write = false): Promise<NbdDevice> {
  return await openDevice(uri, { write }) as NbdDevice;
}

/** Reads a whole export through a fresh client into a file and returns its bytes. */
async function readAll(dev: NbdDevice): Promise<Uint8Array> {
  const path = await Deno.makeTempFile({ dir: "/var/tmp" });
  try {
    await Deno.truncate(path, Number(dev.sizeBytes));
    await using out = await openDevice(path, { write: true });
    await using kc = await KcopydClient.create({ pages: 256 });
    const r = await kc.copy({ device: dev, sector: 0n, count: dev.sizeSectors }, [
      { device: out, sector: 0n },
    ]);
    assert.equal(r.readErr, false);
    return await Deno.readFile(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test({
  name: "local → NBD → local round-trips bytes (nbdkit memory, multi-conn, flush)",
  ignore: !ok,
  async fn() {
    await using server = await startNbdkit(["memory", "32M"]);
    const img = await makeImage(32 * MiB, { seed: 31, dir: "/var/tmp" });
    try {
      await using src = await openDevice(img);
      await using dst = await remote(server.uri, true);
      assert.equal(dst.kind, "nbd");
      assert.equal(dst.sizeSectors, 65536n);
      assert.ok(dst.connectionCount > 1, "several connections with multi-conn");
      await using kc = await KcopydClient.create({ pages: 512 });
      const r = await kc.copy({ device: src, sector: 8n, count: 40000n }, [
        { device: dst, sector: 100n },
      ], { flush: true });
      assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
      const back = await readAll(dst);
      assert.equal(
        sha256(back.subarray(100 * 512, 40100 * 512)),
        await sha256File(img, 8 * 512, 40000 * 512),
      );
      assert.ok(back.subarray(0, 100 * 512).every((b) => b === 0), "before the range untouched");
    } finally {
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "remote → remote and fan-out to two servers and a local file, byte-exact",
  ignore: !ok,
  async fn() {
    await using a = await startNbdkit(["memory", "16M"]);
    await using b = await startNbdkit(["memory", "16M"]);
    await using c = await startNbdkit(["memory", "16M"]);
    const img = await makeImage(16 * MiB, { seed: 32, dir: "/var/tmp" });
    const localPath = await Deno.makeTempFile({ dir: "/var/tmp" });
    try {
      await Deno.truncate(localPath, 16 * MiB);
      await using file = await openDevice(img);
      await using ra = await remote(a.uri, true);
      await using kc = await KcopydClient.create({ pages: 256 });
      const n = 32768n;
      assert.equal(
        (await kc.copy({ device: file, sector: 0n, count: n }, [{ device: ra, sector: 0n }]))
          .writeErr,
        0,
      );
      await using rb = await remote(b.uri, true);
      await using rc = await remote(c.uri, true);
      await using local = await openDevice(localPath, { write: true });
      const r = await kc.copy({ device: ra, sector: 0n, count: n }, [
        { device: rb, sector: 0n },
        { device: local, sector: 0n },
        { device: rc, sector: 0n },
      ]);
      assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
      const want = await sha256File(img);
      assert.equal(await sha256File(localPath), want);
      assert.equal(sha256(await readAll(rb)), want);
      assert.equal(sha256(await readAll(rc)), want);
    } finally {
      await Deno.remove(img);
      await Deno.remove(localPath);
    }
  },
});

Deno.test({
  name: "sparse-random: a copy onto a server with the same seed is accepted, another seed fails",
  ignore: !ok,
  async fn() {
    const args = (seed: number) => ["sparse-random", "size=32M", `seed=${seed}`];
    await using src = await startNbdkit(args(7));
    await using same = await startNbdkit(args(7));
    await using other = await startNbdkit(args(8));
    await using s = await remote(src.uri);
    await using d1 = await remote(same.uri, true);
    await using d2 = await remote(other.uri, true);
    await using kc = await KcopydClient.create({ pages: 256 });
    const job = { device: s, sector: 0n, count: s.sizeSectors };
    const good = await kc.copy(job, [{ device: d1, sector: 0n }]);
    assert.deepEqual(good, { readErr: false, writeErr: 0, errors: [] });
    const bad = await kc.copy(job, [{ device: d2, sector: 0n }]);
    assert.equal(bad.writeErr, 1);
    assert.equal(bad.errors[0].code, "EIO");
    assert.equal(bad.errors[0].dest, 0);
  },
});

Deno.test({
  name: "server errors map to readErr / writeErr with sectors (nbdkit error filter)",
  ignore: !ok,
  async fn() {
    await using rsrv = await startNbdkit([
      "--filter=error",
      "memory",
      "4M",
      "error-pread=EIO",
      "error-pread-rate=100%",
    ]);
    await using wsrv = await startNbdkit([
      "--filter=error",
      "memory",
      "4M",
      "error-pwrite=ENOSPC",
      "error-pwrite-rate=100%",
    ]);
    const img = await makeImage(4 * MiB, { seed: 33, dir: "/var/tmp" });
    try {
      await using local = await openDevice(img, { write: true });
      await using bad = await remote(rsrv.uri);
      await using full = await remote(wsrv.uri, true);
      await using kc = await KcopydClient.create({ pages: 64, subJobSize: 64 << 10 });
      const before = await sha256File(img);
      const r = await kc.copy({ device: bad, sector: 0n, count: 128n }, [{
        device: local,
        sector: 0n,
      }]);
      assert.equal(r.readErr, true);
      assert.deepEqual(r.errors, [{ sector: 0n, count: 128n, code: "EIO" }]);
      assert.equal(await sha256File(img), before, "nothing written after a read error");
      const w = await kc.copy({ device: local, sector: 0n, count: 256n }, [{
        device: full,
        sector: 64n,
      }]);
      assert.equal(w.writeErr, 1);
      assert.equal(w.errors[0].code, "ENOSPC");
      assert.equal(w.errors[0].sector, 64n);
    } finally {
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "a slow server (delay filter) still gets every byte, with replies out of order",
  ignore: !ok,
  async fn() {
    await using srv = await startNbdkit([
      "--filter=delay",
      "memory",
      "8M",
      "delay-write=3ms",
      "delay-read=2ms",
    ]);
    const img = await makeImage(8 * MiB, { seed: 34, dir: "/var/tmp" });
    try {
      await using file = await openDevice(img);
      await using dst = await remote(srv.uri, true);
      await using kc = await KcopydClient.create({ pages: 64, subJobSize: 64 << 10 });
      const r = await kc.copy({ device: file, sector: 0n, count: 16384n }, [{
        device: dst,
        sector: 0n,
      }]);
      assert.equal(r.writeErr, 0);
      assert.equal(sha256(await readAll(dst)), await sha256File(img));
    } finally {
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "zero() uses WRITE_ZEROES and zeroes exactly the range on the server",
  ignore: !ok,
  async fn() {
    await using srv = await startNbdkit(["memory", "4M"]);
    const img = await makeImage(4 * MiB, { seed: 35, dir: "/var/tmp" });
    try {
      await using file = await openDevice(img);
      await using dst = await remote(srv.uri, true);
      await using kc = await KcopydClient.create({ pages: 64 });
      await kc.copy({ device: file, sector: 0n, count: 8192n }, [{ device: dst, sector: 0n }]);
      const z = await kc.zero([{ device: dst, sector: 1001n, count: 77n }]);
      assert.deepEqual(z, { readErr: false, writeErr: 0, errors: [] });
      const back = await readAll(dst);
      const want = await readRange(img, 0, 4 * MiB);
      want.fill(0, 1001 * 512, 1078 * 512);
      assert.equal(sha256(back), sha256(want));
    } finally {
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "qemu-nbd with a named export: copy in, and the image file holds the bytes",
  ignore: !ok || !hasQemuNbd,
  async fn() {
    const image = await makeImage(8 * MiB, { byte: 0, dir: "/var/tmp" });
    const img = await makeImage(8 * MiB, { seed: 36, dir: "/var/tmp" });
    try {
      {
        await using srv = await startQemuNbd(image, "disk");
        await using file = await openDevice(img);
        await using dst = await remote(srv.uri, true);
        assert.equal(dst.sizeBytes, BigInt(8 * MiB));
        await using kc = await KcopydClient.create({ pages: 64 });
        const r = await kc.copy({ device: file, sector: 0n, count: 16384n }, [{
          device: dst,
          sector: 0n,
        }], {
          flush: true,
        });
        assert.equal(r.writeErr, 0);
        await assert.rejects(
          openDevice(srv.uri.replace("/disk?", "/nope?")),
          (e) =>
            e instanceof DeviceError && e.code === "ENXIO" &&
            /no export named "nope"/.test(e.message),
        );
      }
      assert.equal(await sha256File(image), await sha256File(img));
    } finally {
      await Deno.remove(image);
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "a server killed mid-copy fails the in-flight writes; the job reports them and ends",
  ignore: !ok,
  async fn() {
    const srv = await startNbdkit(["--filter=delay", "memory", "64M", "delay-write=20ms"]);
    const img = await makeImage(64 * MiB, { seed: 37, dir: "/var/tmp" });
    try {
      await using file = await openDevice(img);
      const dst = await remote(srv.uri, true);
      await using kc = await KcopydClient.create({ pages: 256, subJobSize: 128 << 10 });
      const job = kc.copy({ device: file, sector: 0n, count: 131072n }, [{
        device: dst,
        sector: 0n,
      }], {
        flags: 1, // IGNORE_ERROR: every chunk is attempted and reported
      });
      await new Promise((r) => setTimeout(r, 300));
      await srv.kill();
      const r = await job;
      assert.equal(r.writeErr, 1);
      assert.ok(r.errors.length > 0);
      assert.ok(
        r.errors.every((e) => e.dest === 0 && /^(ECONNRESET|ENOTCONN|EPIPE)$/.test(e.code)),
        JSON.stringify(r.errors.slice(0, 3), (_, v) => typeof v === "bigint" ? `${v}` : v),
      );
      const failed = r.errors.reduce((n, e) => n + e.count, 0n);
      assert.ok(failed > 0n && failed <= 131072n, "the unknown sectors are listed");
      await dst.close();
    } finally {
      await srv[Symbol.asyncDispose]();
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "opening fails fast with a clear DeviceError: refused, missing socket, read-only export",
  ignore: !ok,
  async fn() {
    const t0 = performance.now();
    await assert.rejects(
      openDevice("nbd://127.0.0.1:1/disk"),
      (e) => e instanceof DeviceError && e.code === "ECONNREFUSED",
    );
    await assert.rejects(
      openDevice("nbd+unix:///?socket=/nonexistent/nbd.sock"),
      (e) => e instanceof DeviceError && e.code === "ENOENT",
    );
    await assert.rejects(
      openDevice("nbd+unix:///"),
      (e) => e instanceof DeviceError && /socket=PATH/.test(e.message),
    );
    await using ro = await startNbdkit(["memory", "1M"], { readOnly: true });
    await assert.rejects(
      openDevice(ro.uri, { write: true }),
      (e) => e instanceof DeviceError && e.code === "EROFS",
    );
    await using r = await openDevice(ro.uri);
    assert.equal(r.writable, false);
    assert.ok(performance.now() - t0 < 5000, "within seconds");
  },
});

Deno.test({
  name:
    "the CLI works on remote exports: copy with a region suffix, verify, info, and exit 2 when unreachable",
  ignore: !ok,
  async fn() {
    await using srv = await startNbdkit(["memory", "8M"]);
    const img = await makeImage(8 * MiB, { seed: 38, dir: "/var/tmp" });
    const run = async (...args: string[]) => {
      const o = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", CLI, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return {
        code: o.code,
        out: new TextDecoder().decode(o.stdout),
        err: new TextDecoder().decode(o.stderr),
      };
    };
    try {
      let r = await run("copy", `${img}:0+4MiB`, `${srv.uri}:8`, "--json");
      assert.equal(r.code, 0, r.err);
      assert.equal(JSON.parse(r.out).bytes, 4 * MiB);
      r = await run("verify", `${img}:0+4MiB`, `${srv.uri}:8`);
      assert.equal(r.code, 0, r.out + r.err);
      r = await run("verify", `${img}:0+4MiB`, `${srv.uri}:16`);
      assert.equal(r.code, 1);
      r = await run("info", srv.uri, "--json");
      assert.equal(r.code, 0, r.err);
      const [info] = JSON.parse(r.out);
      assert.deepEqual([info.sizeBytes, info.isBlockDevice], [8 * MiB, true]);
      r = await run("copy", img, "nbd://127.0.0.1:1/disk");
      assert.equal(r.code, 2);
      assert.match(r.err, /^kcopyd: error: .*ECONNREFUSED.*\n$/);
      r = await run("copy", `${img}:0+1MiB`, `${srv.uri}:16+1MiB`, "--json");
      assert.equal(r.code, 0, "a region follows the complete URI");
      r = await run("copy", `${img}:0+16M`, srv.uri);
      assert.equal(r.code, 2);
      assert.match(r.err, /too small|exceeds/);
    } finally {
      await Deno.remove(img);
    }
  },
});
