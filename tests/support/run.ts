/** Runs a command and returns its stdout; throws with its stderr when it fails. */
export async function run(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}): ${err}`);
  }
  return new TextDecoder().decode(out.stdout).trim();
}

/** True when `cmd` can be run (looked up on PATH, plus /usr/sbin and /sbin). */
export async function hasCommand(cmd: string): Promise<boolean> {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    if (d && await Deno.stat(`${d}/${cmd}`).then((s) => s.isFile, () => false)) return true;
  }
  return false;
}

/** Waits until `check()` is true, polling every 20 ms, for at most `ms`. */
export async function waitFor(check: () => Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
