// NBD servers for tests: nbdkit or qemu-nbd on a Unix socket in a temp dir (or a loopback port).
import { hasCommand, waitFor } from "./run.ts";

/** A running server; killed on dispose. */
export interface NbdServer extends AsyncDisposable {
  /** `nbd+unix:///EXPORT?socket=PATH` (or `nbd://127.0.0.1:PORT/EXPORT`). */
  readonly uri: string;
  readonly socket: string;
  readonly process: Deno.ChildProcess;
  /** Kills the server at once (SIGKILL), as a crash would. */
  kill(): Promise<void>;
}

/** Whether nbdkit is here, and if not, why. */
export async function canUseNbdkit(): Promise<{ ok: boolean; reason: string }> {
  return (await hasCommand("nbdkit"))
    ? { ok: true, reason: "" }
    : { ok: false, reason: "nbdkit is missing (apt-get install nbdkit)" };
}

async function start(cmd: string, args: string[], socket: string, uri: string, dir: string) {
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  let gone = false;
  const done = child.output().finally(() => gone = true);
  try {
    await waitFor(
      async () => {
        if (gone) {
          throw new Error(`${cmd} exited: ${new TextDecoder().decode((await done).stderr)}`);
        }
        return await Deno.stat(socket).then(() => true, () => false);
      },
      10_000,
      `${cmd} to listen`,
    );
  } catch (err) {
    if (!gone) child.kill("SIGKILL");
    await done.catch(() => {});
    await Deno.remove(dir, { recursive: true });
    throw err;
  }
  const stop = async (signal: Deno.Signal) => {
    if (!gone) {
      try {
        child.kill(signal);
      } catch { /* gone */ }
    }
    await done.catch(() => {});
  };
  return {
    uri,
    socket,
    process: child,
    kill: () => stop("SIGKILL"),
    async [Symbol.asyncDispose]() {
      await stop("SIGTERM");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Starts `nbdkit [--filter=…] PLUGIN ARGS` on a Unix socket.
 *
 * @param args nbdkit arguments after the server options, e.g. `["memory", "64M"]`.
 * @param options Export name, read-only, extra server options.
 */
export async function startNbdkit(
  args: string[],
  options: { exportName?: string; readOnly?: boolean; serverArgs?: string[] } = {},
): Promise<NbdServer> {
  const dir = await Deno.makeTempDir({ prefix: "kcopyd-nbd-" });
  const socket = `${dir}/nbd.sock`;
  const name = options.exportName ?? "";
  const server = ["--foreground", "--exit-with-parent", "-U", socket];
  if (options.readOnly) server.push("--readonly");
  if (name) server.push("--export-name", name);
  const uri = `nbd+unix:///${encodeURIComponent(name)}?socket=${socket}`;
  return await start(
    "nbdkit",
    [...server, ...(options.serverArgs ?? []), ...args],
    socket,
    uri,
    dir,
  );
}

/** Starts `qemu-nbd` serving a raw image under an export name on a Unix socket. */
export async function startQemuNbd(image: string, exportName: string): Promise<NbdServer> {
  const dir = await Deno.makeTempDir({ prefix: "kcopyd-qnbd-" });
  const socket = `${dir}/nbd.sock`;
  return await start(
    "qemu-nbd",
    [
      "-f",
      "raw",
      "-x",
      exportName,
      "--persistent",
      "--shared=8",
      "--cache=none",
      "--aio=io_uring",
      "-k",
      socket,
      image,
    ],
    socket,
    `nbd+unix:///${exportName}?socket=${socket}`,
    dir,
  );
}
