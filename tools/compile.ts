// `deno task compile`: builds a standalone `kcopyd` binary with `deno compile`. That needs
// Deno's runtime for the target, downloaded on first use; where the download is impossible it
// stops with one clear message (use `deno install -g` instead, which works offline).
const out = Deno.args[0] ?? "kcopyd";
const cmd = new Deno.Command(Deno.execPath(), {
  args: ["compile", "--allow-all", "--output", out, new URL("../cli.ts", import.meta.url).pathname],
  stdout: "inherit",
  stderr: "piped",
  env: { NO_COLOR: "1" },
});
const res = await cmd.output();
if (!res.success) {
  const err = new TextDecoder().decode(res.stderr);
  console.error(
    "compile: deno compile could not build the binary. It downloads the Deno runtime " +
      "(denort) for the target on first use; that download failed or is unavailable here.\n" +
      "Install the command instead (works offline):\n" +
      "  deno install -g -n kcopyd --allow-all ./cli.ts\n" +
      `deno said: ${
        err.split("\n").filter((l) => /error/i.test(l)).slice(0, 2).join(" | ").trim() ||
        err.trim().split("\n")[0]
      }`,
  );
  Deno.exit(1);
}
console.log(`compile: built ./${out}`);
