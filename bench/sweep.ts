// `deno task bench:sweep`: which client and CLI settings are fastest here. Copies the whole
// source to one and to three destinations with each setting in turn, interleaved, several rounds,
// and prints the medians, fastest first. The defaults in lib/client.ts and lib/cli/ come from it.
// Every copy is checked (xxh128 of each destination) before its time counts.
//
//   deno task bench:sweep [--size 1G] [--rounds 3]
import { parseArgs } from "node:util";
import { parseBytes } from "../lib/cli/units.ts";
import { makeDevices } from "./lib/devices.ts";
import { selfTimed, sh, timed, type Timing } from "./lib/exec.ts";
import { stats } from "./lib/results.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "1G" },
    rounds: { type: "string", default: "3" },
  },
});
const SIZE = Number(parseBytes(values.size!, "--size"));
const ROUNDS = Number(values.rounds);
const DENO = Deno.execPath();
const here = (p: string) => new URL(p, import.meta.url).pathname;

/** A setting to try: a name and how to run one copy with it. */
type Setting = [name: string, run: (src: string, outs: string[]) => Promise<Timing>];

const library: Setting[] = [];
for (const wait of ["worker", "inline"]) {
  for (const pages of [2048, 4096, 8192]) {
    for (const sub of [256 << 10, 512 << 10, 1 << 20]) {
      for (const split of [4, 8, 16]) {
        const args = ["--wait", wait, "--pages", `${pages}`, "--sub-job-size", `${sub}`];
        library.push([
          `library wait=${wait} pages=${pages} subJobSize=${sub >> 10}K splitCount=${split}`,
          (src, outs) =>
            selfTimed(DENO, [
              ...["run", "-A", here("copy_job.ts"), ...args, "--split-count", `${split}`],
              ...[src, ...outs],
            ]),
        ]);
      }
    }
  }
}
const cli: Setting[] = [];
for (const memory of ["16M", "32M", "64M"]) {
  for (const sub of ["256K", "512K", "1M"]) {
    cli.push([
      `CLI --memory ${memory} --sub-job-size ${sub}`,
      (src, outs) =>
        timed(DENO, [
          ...["run", "-A", here("../cli.ts"), "copy", src, ...outs, "-q"],
          ...["--memory", memory, "--sub-job-size", sub],
        ]),
    ]);
  }
}

const devs = await makeDevices(SIZE, 3);
try {
  const srcHash = (await sh("xxhsum", ["-H2", devs.files[0]])).stdout.split(/\s+/)[0];
  for (const nDests of [1, 3]) {
    const ds = Array.from({ length: nDests }, (_, i) => i + 1);
    const outs = ds.map((d) => devs.dev[d]);
    for (const [label, settings] of [["library", library], ["CLI", cli]] as const) {
      const rates = new Map<string, number[]>();
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, run] of settings) {
          await devs.reset(ds);
          const t = await run(devs.dev[0], outs);
          await devs.settle(ds);
          for (const d of ds) {
            const h = (await sh("xxhsum", ["-H2", devs.files[d]])).stdout.split(/\s+/)[0];
            if (h !== srcHash) throw new Error(`${name}: destination ${d} is wrong`);
          }
          rates.set(name, [...(rates.get(name) ?? []), SIZE / 2 ** 30 / t.seconds]);
        }
      }
      const ranked = [...rates].map(([name, v]) => ({ name, ...stats(v) }))
        .sort((a, b) => b.med - a.med);
      console.log(`\n${label}, 1 → ${nDests}, GiB/s of source (median, min-max of ${ROUNDS}):`);
      for (const r of ranked) {
        console.log(
          `  ${r.med.toFixed(2)}  (${r.min.toFixed(2)}-${r.max.toFixed(2)})  ${r.name}`,
        );
      }
    }
  }
} finally {
  await devs.cleanup();
}
