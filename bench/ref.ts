// Builds and runs the C reference (bench/ref/ring_ref.c) on the same kind of file as
// bench/ring_bench.ts, so the two can be compared: `deno task bench:ref`.
const dir = await Deno.makeTempDir({ prefix: "kcopyd-ref-" });
const file = await Deno.makeTempFile({ dir: "/dev/shm", prefix: "kcopyd-ref-" });
try {
  await Deno.writeFile(file, new Uint8Array(64 << 20).fill(0x5a));
  const src = new URL("./ref/ring_ref.c", import.meta.url).pathname;
  const cc = await new Deno.Command("cc", {
    args: ["-O2", "-o", `${dir}/ring_ref`, src, "-luring"],
    stderr: "inherit",
  }).output();
  if (!cc.success) {
    console.error("cannot build bench/ref/ring_ref.c: install gcc and liburing-dev");
    Deno.exit(1);
  }
  const run = await new Deno.Command(`${dir}/ring_ref`, { args: [file], stdout: "inherit" })
    .output();
  Deno.exitCode = run.code;
} finally {
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(file);
}
