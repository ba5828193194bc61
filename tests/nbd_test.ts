// Remote devices over NBD, against real nbdkit and qemu-nbd servers on Unix sockets and on
// 127.0.0.1. (The protocol details are unit-tested against a scripted server in lib/nbd/.)
import assert from "node:assert/strict";
import { DeviceError, KcopydClient, type NbdDevice, openDevice } from "../mod.ts";
import { makeImage, readRange, sha256, sha256File } from "./support/image.ts";
import { canUseNbdkit, startNbdkit, startQemuNbd } from "./support/nbd_server.ts";
import { hasCommand, waitFor } from "./support/run.ts";

const { ok, reason } = await canUseNbdkit();
if (!ok) console.log(`skipping NBD tests: ${reason}`);
const hasQemuNbd = await hasCommand("qemu-nbd");
if (!hasQemuNbd) console.log("skipping the qemu-nbd test: qemu-nbd is missing (qemu-utils)");
const CLI = new URL("../cli.ts", import.meta.url).pathname;
const MiB = 1 << 20;

async function remote(uri: string, write = false): Promise<NbdDevice> {
  return await openDevice(uri, { write }) as NbdDevice;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts a server listening on 127.0.0.1:`port` (it must bind there); killed on dispose. */
async function startTcp(cmd: string, args: string[], port: number) {
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  let gone = false;
  const done = child.output().finally(() => gone = true);
  const stop = async () => {
    if (!gone) child.kill("SIGKILL");
    await done.catch(() => {});
  };
  try {
    await waitFor(
      async () => {
        if (gone) {
          throw new Error(`${cmd} exited: ${new TextDecoder().decode((await done).stderr)}`);
        }
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      `${cmd} on port ${port}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { [Symbol.asyncDispose]: stop };
}

/** Lines of an nbdkit log filter file with the given request name. */
async function logged(path: string, what: string): Promise<string[]> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").filter((l) => l.includes(` ${what} id=`)); // not " ...Write id=1 return"
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
  name: "a slow server (delay filter) still gets every byte",
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
  name:
    "zero() sends WRITE_ZEROES (no data) and zeroes exactly the range; writes carry FUA when asked",
  ignore: !ok,
  async fn() {
    const dir = await Deno.makeTempDir();
    const log = `${dir}/log`;
    await using srv = await startNbdkit(["--filter=log", "memory", "4M", `logfile=${log}`]);
    const img = await makeImage(4 * MiB, { seed: 35, dir: "/var/tmp" });
    try {
      await using file = await openDevice(img);
      await using dst = await openDevice(srv.uri, { write: true, fua: true }) as NbdDevice;
      await using kc = await KcopydClient.create({ pages: 64 });
      await kc.copy({ device: file, sector: 0n, count: 8192n }, [{ device: dst, sector: 0n }], {
        flush: true,
      });
      const writes = await logged(log, "Write");
      assert.ok(writes.length > 0 && writes.every((l) => l.includes("fua=1")), writes[0]);
      assert.ok((await logged(log, "Flush")).length >= 1, "the job's flush reached the server");
      const z = await kc.zero([{ device: dst, sector: 1001n, count: 77n }]);
      assert.deepEqual(z, { readErr: false, writeErr: 0, errors: [] });
      const zeros = await logged(log, "Zero");
      assert.equal(zeros.length, 1);
      assert.match(zeros[0], /offset=0x7d200 count=0x9a00 /);
      assert.equal((await logged(log, "Write")).length, writes.length, "no data sent to zero");
      const back = await readAll(dst);
      const want = await readRange(img, 0, 4 * MiB);
      want.fill(0, 1001 * 512, 1078 * 512);
      assert.equal(sha256(back), sha256(want));
    } finally {
      await Deno.remove(img);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "zero() falls back to writing zeros when the server does not offer WRITE_ZEROES",
  ignore: !ok,
  async fn() {
    await using srv = await startNbdkit(["--filter=nozero", "memory", "1M", "zeromode=none"]);
    await using dst = await remote(srv.uri, true);
    assert.equal(dst.features.writeZeroes, false);
    const ones = new Uint8Array(1 * MiB).fill(1);
    assert.equal(await dst.pwrite(ones, 0), ones.length);
    await using kc = await KcopydClient.create({ pages: 64 });
    const z = await kc.zero([{ device: dst, sector: 3n, count: 1000n }]);
    assert.deepEqual(z, { readErr: false, writeErr: 0, errors: [] });
    const back = new Uint8Array(1 * MiB);
    assert.equal(await dst.pread(back, 0), back.length);
    ones.fill(0, 3 * 512, 1003 * 512);
    assert.deepEqual(back, ones);
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
      const t0 = performance.now();
      const r = await job;
      assert.equal(r.writeErr, 1);
      assert.ok(r.errors.length > 0);
      assert.ok(
        r.errors.every((e) => e.dest === 0 && e.code === "ENOTCONN"),
        JSON.stringify(r.errors.slice(0, 3), (_, v) => typeof v === "bigint" ? `${v}` : v),
      );
      const failed = r.errors.reduce((n, e) => n + e.count, 0n);
      assert.ok(failed > 0n && failed <= 131072n, "the unknown sectors are listed");
      await dst.close();
      assert.ok(performance.now() - t0 < 3000, "no hang");
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
      openDevice("nbd://no-such-host.invalid/", { connectTimeoutMs: 2000 }),
      (e) => e instanceof DeviceError && /^(EHOSTUNREACH|ETIMEDOUT)$/.test(e.code),
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

Deno.test({
  name:
    "TCP on 127.0.0.1: nbdkit and qemu-nbd (named export), remote → local and back; one export under two spellings overlaps",
  ignore: !ok || !hasQemuNbd,
  async fn() {
    const kport = freePort();
    await using _k = await startTcp("nbdkit", [
      "--foreground",
      "--exit-with-parent",
      "-p",
      `${kport}`,
      "-i",
      "127.0.0.1",
      "memory",
      "8M",
    ], kport);
    const image = await makeImage(8 * MiB, { seed: 39, dir: "/var/tmp" });
    const out = await makeImage(8 * MiB, { byte: 0, dir: "/var/tmp" });
    const qport = freePort();
    try {
      await using _q = await startTcp("qemu-nbd", [
        "-f",
        "raw",
        "-x",
        "disk",
        "--persistent",
        "--shared=8",
        "-p",
        `${qport}`,
        "-b",
        "127.0.0.1",
        image,
      ], qport);
      await using q = await remote(`nbd://127.0.0.1:${qport}/disk`);
      assert.equal(q.id, `nbd:nbd://127.0.0.1:${qport}/disk`);
      await using k = await remote(`nbd://127.0.0.1:${kport}/`, true);
      await using local = await openDevice(out, { write: true });
      await using kc = await KcopydClient.create({ pages: 256 });
      const all = { device: q, sector: 0n, count: q.sizeSectors };
      const r = await kc.copy(all, [{ device: local, sector: 0n }, { device: k, sector: 0n }]);
      assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
      assert.equal(await sha256File(out), await sha256File(image));
      assert.equal(sha256(await readAll(k)), await sha256File(image));
      // The same export written another way has the same id: a copy onto itself is refused.
      await using again = await remote(`nbd://127.0.0.1:${kport}`, true); // no "/"
      assert.equal(again.id, k.id);
      await assert.rejects(
        kc.copy({ device: k, sector: 0n, count: 100n }, [{ device: again, sector: 50n }]),
        /overlap on the same storage/,
      );
    } finally {
      await Deno.remove(image);
      await Deno.remove(out);
    }
  },
});

Deno.test({
  name:
    "the server's block sizes: minimum → logicalBlockSize, larger requests split at its maximum",
  ignore: !ok,
  async fn() {
    await using srv = await startNbdkit([
      "--filter=blocksize-policy",
      "memory",
      "8M",
      "blocksize-minimum=4096",
      "blocksize-preferred=65536",
      "blocksize-maximum=256K",
      "blocksize-error-policy=error",
    ]);
    const img = await makeImage(8 * MiB, { seed: 40, dir: "/var/tmp" });
    try {
      await using file = await openDevice(img);
      await using dst = await remote(srv.uri, true);
      assert.deepEqual([dst.logicalBlockSize, dst.physicalBlockSize, dst.maxRequest], [
        4096,
        65536,
        256 << 10,
      ]);
      await using kc = await KcopydClient.create({ pages: 1024, subJobSize: 2 * MiB });
      const r = await kc.copy({ device: file, sector: 0n, count: 16384n }, [{
        device: dst,
        sector: 0n,
      }]);
      assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
      assert.equal(sha256(await readAll(dst)), await sha256File(img));
      await assert.rejects(
        kc.copy({ device: file, sector: 0n, count: 8n }, [{ device: dst, sector: 1n }]),
        /not aligned to the 4096-byte logical block size/,
      );
    } finally {
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "a copy larger than the export is refused before any I/O, naming the URI",
  ignore: !ok,
  async fn() {
    await using srv = await startNbdkit(["memory", "1M"]);
    const img = await makeImage(2 * MiB, { seed: 41, dir: "/dev/shm" });
    try {
      await using file = await openDevice(img);
      await using dst = await remote(srv.uri, true);
      await using kc = await KcopydClient.create({ pages: 64 });
      await assert.rejects(
        kc.copy({ device: file, sector: 0n, count: 4096n }, [{ device: dst, sector: 0n }]),
        (e) =>
          e instanceof RangeError && e.message.includes(`> 2048 sectors of "${srv.uri}"`) &&
          !e.message.includes("\n"),
      );
      assert.equal(dst.inFlight, 0);
    } finally {
      await Deno.remove(img);
    }
  },
});

Deno.test({
  name: "a server that stops answering: requests fail with ETIMEDOUT after ioTimeoutMs",
  ignore: !ok,
  async fn() {
    const srv = await startNbdkit(["--filter=delay", "memory", "1M", "delay-read=10"]);
    try {
      const img = await makeImage(1 * MiB, { byte: 0, dir: "/dev/shm" });
      try {
        await using out = await openDevice(img, { write: true });
        await using src = await openDevice(srv.uri, { ioTimeoutMs: 300 });
        await using kc = await KcopydClient.create({ pages: 64 });
        const t0 = performance.now();
        const r = await kc.copy({ device: src, sector: 0n, count: 2048n }, [{
          device: out,
          sector: 0n,
        }]);
        assert.equal(r.readErr, true);
        assert.equal(r.errors[0].code, "ETIMEDOUT");
        assert.ok(performance.now() - t0 < 3000);
      } finally {
        await Deno.remove(img);
      }
    } finally {
      await srv.kill(); // nbdkit would wait out its delays
      await srv[Symbol.asyncDispose]();
    }
  },
});

/** A throwaway CA and a server certificate for 127.0.0.1, as nbdkit --tls-certificates wants. */
async function makePki(dir: string): Promise<void> {
  const sh = async (...args: string[]) => {
    const o = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
      .output();
    if (!o.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(o.stderr)}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await sh(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca-cert.pem",
    "-days",
    "2",
    "-subj",
    "/CN=kcopyd test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  await sh(
    "req",
    ...ec,
    "-keyout",
    "server-key.pem",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  );
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await sh(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca-cert.pem",
    "-CAkey",
    "ca-key.pem",
    "-CAcreateserial",
    "-out",
    "server-cert.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  );
}

const hasOpenssl = await hasCommand("openssl");
if (ok && !hasOpenssl) {
  console.log("skipping the TLS test: openssl is missing (to make certificates)");
}

Deno.test({
  name:
    "TLS (nbds://, nbdkit --tls=require): the certificate is checked, and copies are byte-exact",
  ignore: !ok || !hasOpenssl,
  async fn() {
    const pki = await Deno.makeTempDir({ prefix: "kcopyd-pki-" });
    const img = await makeImage(8 * MiB, { seed: 42, dir: "/dev/shm" });
    try {
      await makePki(pki);
      const port = freePort();
      await using _srv = await startTcp("nbdkit", [
        "--foreground",
        "--exit-with-parent",
        "-p",
        `${port}`,
        "-i",
        "127.0.0.1",
        "--tls=require",
        `--tls-certificates=${pki}`,
        "memory",
        "8M",
      ], port);
      await assert.rejects(
        openDevice(`nbd://127.0.0.1:${port}/`),
        (e) => e instanceof DeviceError && e.code === "EACCES" && /requires TLS/.test(e.message),
      );
      await assert.rejects(
        openDevice(`nbds://127.0.0.1:${port}/`),
        (e) =>
          e instanceof DeviceError && e.code === "EACCES" &&
          /TLS handshake failed: .*UnknownIssuer/.test(e.message),
      );
      const uri = `nbds://127.0.0.1:${port}/?tls-certificates=${pki}`;
      await using dst = await remote(uri, true);
      assert.equal(dst.id, `nbd:nbd://127.0.0.1:${port}/`);
      assert.ok(dst.connectionCount > 1);
      await using file = await openDevice(img);
      await using kc = await KcopydClient.create({ pages: 256 });
      const r = await kc.copy({ device: file, sector: 0n, count: 16384n }, [{
        device: dst,
        sector: 0n,
      }], { flush: true });
      assert.deepEqual(r, { readErr: false, writeErr: 0, errors: [] });
      assert.equal(sha256(await readAll(dst)), await sha256File(img));
    } finally {
      await Deno.remove(img);
      await Deno.remove(pki, { recursive: true });
    }
  },
});
