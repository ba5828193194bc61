// The kcopyd side of W3/W4 in bench/compare.ts, in a process of its own so that its peak RSS is
// measured like the C reference's: copy a list of chunks from one device to the same offsets on
// another, one kcopyd job per chunk, up to INFLIGHT jobs at once (how dm-snapshot drives kcopyd).
// Prints elapsed seconds; exits 1 if a job reports an error.
//
//   deno run --allow-all bench/chunk_jobs.ts [--wait worker|inline] SRC DST CHUNK_BYTES INFLIGHT LIST
//
// LIST holds the chunk indices as little-endian uint32 (the same file the C reference reads).
// --wait is the client's waitMode, as in bench/copy_job.ts (default: the library's default).
import { parseArgs } from "node:util";
import { KcopydClient, openDevice } from "../mod.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { wait: { type: "string", default: "worker" } },
});
const [srcPath, dstPath, chunkArg, inFlightArg, listPath] = positionals;
const mode = values.wait;
if (!listPath || (mode !== "worker" && mode !== "inline")) {
  console.error("usage: chunk_jobs.ts [--wait worker|inline] SRC DST CHUNK_BYTES INFLIGHT LIST");
  Deno.exit(2);
}
const chunk = Number(chunkArg);
const inFlight = Number(inFlightArg);
const list = new Uint32Array((await Deno.readFile(listPath)).buffer);
const sectors = BigInt(chunk / 512);

await using src = await openDevice(srcPath);
await using dst = await openDevice(dstPath, { write: true });
await using kc = await KcopydClient.create({ waitMode: mode });
let next = 0;
let failed = 0;
const t0 = performance.now();
const worker = async () => {
  while (next < list.length) {
    const at = BigInt(list[next++]) * sectors;
    const r = await kc.copy({ device: src, sector: at, count: sectors }, [{
      device: dst,
      sector: at,
    }]);
    if (r.readErr || r.writeErr) failed++;
  }
};
await Promise.all(Array.from({ length: inFlight }, worker));
console.log(((performance.now() - t0) / 1000).toFixed(6));
if (failed) {
  console.error(`chunk_jobs: ${failed} job(s) reported errors`);
  Deno.exitCode = 1;
}
