// The kcopyd library side of W1/W2 in bench/compare.ts, in a process of its own so that its peak
// RSS is measured like every peer's: one job copying the whole source to every destination.
// Prints the job's elapsed seconds (from copy() to its completion); exits 1 if it reports an error.
// The client options default to the library's defaults; the flags are for sweeping them.
//
//   deno run --allow-all bench/copy_job.ts [--wait worker|inline] [--pages N]
//     [--sub-job-size BYTES] [--split-count N] SRC DEST...
import { parseArgs } from "node:util";
import { KcopydClient, openDevice } from "../mod.ts";
import type { ClientOptions } from "../lib/types.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    wait: { type: "string" },
    pages: { type: "string" },
    "sub-job-size": { type: "string" },
    "split-count": { type: "string" },
  },
});
if (positionals.length < 2) {
  console.error("usage: copy_job.ts [options] SRC DEST...");
  Deno.exit(2);
}
const num = (v: string | undefined) => v === undefined ? undefined : Number(v);
const options: ClientOptions = {
  waitMode: values.wait as ClientOptions["waitMode"],
  pages: num(values.pages),
  subJobSize: num(values["sub-job-size"]),
  splitCount: num(values["split-count"]),
};

const [srcPath, ...destPaths] = positionals;
await using src = await openDevice(srcPath);
const dests = await Promise.all(destPaths.map((p) => openDevice(p, { write: true })));
await using kc = await KcopydClient.create(options);
const t0 = performance.now();
const r = await kc.copy(
  { device: src, sector: 0n, count: src.sizeSectors },
  dests.map((device) => ({ device, sector: 0n })),
);
console.log(((performance.now() - t0) / 1000).toFixed(6));
for (const d of dests) await d.close();
if (r.readErr || r.writeErr) {
  console.error(`copy_job: the copy failed: ${JSON.stringify(r.errors)}`);
  Deno.exitCode = 1;
}
