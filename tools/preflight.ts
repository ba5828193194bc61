// Preflight for `deno task setup|demo|test|bench`: finds liburing (and, with --for-tests, the
// tools the tests use), installs what is missing with apt when running as root, and otherwise
// prints the exact command to run. Then it sets up (and tears down) a tiny io_uring to prove the
// kernel lets us use one. Prints nothing when everything is already there.
//
//   deno run --allow-all tools/preflight.ts [--for-tests]
//
// Exit status: 0 ready; 1 liburing missing or io_uring unusable (the message says why and what
// to run). Missing test tools only warn: the tests that need them are skipped with a reason.
import { parseArgs } from "node:util";
import { PARAMS_SIZE, RING } from "../ffi/abi.ts";
import { liburing, liburingPath } from "../ffi/liburing.ts";

/** The Debian package that provides each command the tests use. */
const TEST_TOOLS: Record<string, string> = {
  nbdkit: "nbdkit",
  nbdfuse: "libnbd-bin",
  nbdcopy: "libnbd-bin",
  "qemu-nbd": "qemu-utils",
  "qemu-img": "qemu-utils",
  cc: "gcc",
  losetup: "mount",
  script: "bsdutils",
  fusermount3: "fuse3",
};
/** The liburing header the C offsetof probe and the C reference benchmark compile against. */
const HEADER = "/usr/include/liburing.h";
const HEADER_PACKAGE = "liburing-dev";
const LIBURING_PACKAGE = "liburing2";

function say(line: string): void {
  console.error(`preflight: ${line}`);
}

/** The loader's reason when `path` cannot be opened, or undefined when it can. */
function dlopenError(path: string): string | undefined {
  try {
    Deno.dlopen(path, {}).close();
    return undefined;
  } catch (err) {
    // Deno repeats its prefix: "Could not open library: Could not open library: /x: …".
    return (err instanceof Error ? err.message : String(err))
      .replace(/^(Could not open library: )+/, "");
  }
}

async function isFile(path: string): Promise<boolean> {
  return await Deno.stat(path).then((s) => s.isFile, () => false);
}

async function onPath(tool: string): Promise<boolean> {
  const dirs = [...(Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":"), "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (dir && await isFile(`${dir}/${tool}`)) return true;
  }
  return false;
}

/** `apt-get update` once, then one `apt-get install` of every package; true when it worked. */
async function aptInstall(packages: string[]): Promise<boolean> {
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const lock = ["-o", "DPkg::Lock::Timeout=120"];
  say(`installing ${packages.join(" ")} ...`);
  const update = await new Deno.Command("apt-get", {
    args: [...lock, "update", "-qq"],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!update.success) say("apt-get update failed; trying the install with the old package lists");
  const install = await new Deno.Command("apt-get", {
    args: [...lock, "install", "-y", "-qq", "--no-install-recommends", ...packages],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!install.success) {
    const err = new TextDecoder().decode(install.stderr).trim().split("\n").slice(-5).join("\n");
    say(`apt-get install ${packages.join(" ")} failed:\n${err}`);
  }
  return install.success;
}

/** What is missing: Debian package -> the commands or files that need it. */
async function findMissing(forTests: boolean): Promise<Map<string, string[]>> {
  const missing = new Map<string, string[]>();
  const add = (pkg: string, what: string) => missing.set(pkg, [...(missing.get(pkg) ?? []), what]);
  if (dlopenError(liburingPath()) !== undefined) add(LIBURING_PACKAGE, "liburing.so.2");
  if (forTests) {
    for (const [tool, pkg] of Object.entries(TEST_TOOLS)) {
      if (!(await onPath(tool))) add(pkg, tool);
    }
    if (!(await isFile(HEADER))) add(HEADER_PACKAGE, HEADER);
  }
  return missing;
}

/** "sudo apt-get install …" for a user, "apt-get install …" for root. */
function installCommand(packages: string[], root: boolean): string {
  return `${root ? "" : "sudo "}apt-get install ${packages.join(" ")}`;
}

/** Loads the real symbol table and sets up a 2-entry ring; returns the problem, if any. */
async function ringProblem(): Promise<string | undefined> {
  let lib;
  try {
    lib = liburing();
  } catch (err) {
    // The file loads (checked before) but lacks a symbol we need: an older liburing.
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err;
    return `liburing at "${liburingPath()}" lacks symbols kcopyd needs (liburing 2.3 or newer ` +
      `is required): ${cause}`;
  }
  const ring = new Uint8Array(RING.size + 64);
  const params = new Uint8Array(PARAMS_SIZE);
  const rc = lib.io_uring_queue_init_params(
    2,
    Deno.UnsafePointer.of(ring),
    Deno.UnsafePointer.of(params),
  );
  if (rc >= 0) {
    lib.io_uring_queue_exit(Deno.UnsafePointer.of(ring));
    return undefined;
  }
  const disabled = await Deno.readTextFile("/proc/sys/kernel/io_uring_disabled")
    .then((s) => Number(s.trim()), () => 0);
  const errno = -rc;
  if (disabled === 2) {
    return "io_uring is disabled on this machine (kernel.io_uring_disabled = 2). " +
      "Enable it with: sudo sysctl kernel.io_uring_disabled=0";
  }
  if (errno === 1 && disabled === 1) {
    return "io_uring is limited to root and the io_uring_group by kernel.io_uring_disabled = 1: " +
      "run as root, add this user to that group, or run: sudo sysctl kernel.io_uring_disabled=0";
  }
  if (errno === 1 || errno === 38) {
    return `Cannot set up an io_uring (${errno === 1 ? "EPERM" : "ENOSYS"}): the kernel has no ` +
      "io_uring, or a seccomp profile blocks io_uring_setup (Docker and Podman block it by " +
      "default: run the container with --security-opt seccomp=unconfined)";
  }
  if (errno === 12) {
    return "Cannot set up an io_uring (ENOMEM): raise the locked-memory limit (ulimit -l) or use " +
      "Linux 5.12 or newer";
  }
  return `Cannot set up an io_uring: io_uring_queue_init_params returned errno ${errno}`;
}

/** A one-line warning for kernels older than 5.19 (no IORING_ASYNC_CANCEL_ANY), else undefined. */
function kernelWarning(): string | undefined {
  const m = /^(\d+)\.(\d+)/.exec(Deno.osRelease());
  if (!m) return undefined;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major > 5 || (major === 5 && minor >= 19)) return undefined;
  return `Linux ${Deno.osRelease()} is older than 5.19: kcopyd is tested on 5.19 and newer`;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { "for-tests": { type: "boolean", default: false } },
  });
  const forTests = values["for-tests"];
  const override = Deno.env.get("KCOPYD_LIBURING_PATH");
  if (override) {
    const err = dlopenError(override);
    if (err !== undefined) {
      say(`KCOPYD_LIBURING_PATH="${override}" cannot be loaded: ${err}`);
      say(
        "point it at liburing.so.2 (liburing 2.3 or newer), or unset it to use the system's: " +
          installCommand([LIBURING_PACKAGE], Deno.uid() === 0),
      );
      return 1;
    }
  }

  const root = Deno.uid() === 0;
  let missing = await findMissing(forTests);
  if (missing.size > 0 && root && await onPath("apt-get")) {
    await aptInstall([...missing.keys()]);
    missing = await findMissing(forTests);
  }
  if (missing.has(LIBURING_PACKAGE)) {
    say(
      `liburing (liburing.so.2, 2.3 or newer) is missing. Install it with: ` +
        `${installCommand([LIBURING_PACKAGE], root)} ` +
        `(Fedora: dnf install liburing), or set KCOPYD_LIBURING_PATH to the library file`,
    );
    return 1;
  }
  if (missing.size > 0) {
    const what = [...missing.values()].flat().join(", ");
    say(
      `tests that need ${what} will be skipped; to run them: ` +
        installCommand([...missing.keys()], root),
    );
  }

  const problem = await ringProblem();
  if (problem) {
    say(problem);
    return 1;
  }
  const warning = kernelWarning();
  if (warning) say(warning);
  return 0;
}

Deno.exitCode = await main(Deno.args);
