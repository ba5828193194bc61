// Preflight for `deno task setup|demo|test|bench`: finds liburing (and, with --for-tests, the
// tools the tests use), installs what is missing with apt when running as root, and otherwise
// says exactly what to run. Prints nothing when everything is already there.
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { "for-tests": { type: "boolean", default: false } },
});

/** Debian package that provides each tool the tests use. */
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
const HEADER = "/usr/include/liburing.h";

function say(line: string): void {
  console.error(`preflight: ${line}`);
}

function liburingLoads(): boolean {
  const path = Deno.env.get("KCOPYD_LIBURING_PATH") || "liburing.so.2";
  try {
    Deno.dlopen(path, {}).close();
    return true;
  } catch {
    return false;
  }
}

async function onPath(tool: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      const st = await Deno.stat(`${dir}/${tool}`);
      if (st.isFile) return true;
    } catch {
      // not here
    }
  }
  for (const dir of ["/usr/sbin", "/sbin"]) {
    if (await Deno.stat(`${dir}/${tool}`).then(() => true, () => false)) return true;
  }
  return false;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function aptInstall(packages: string[]): Promise<boolean> {
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  say(`installing ${packages.join(" ")} with apt-get ...`);
  const update = await new Deno.Command("apt-get", { args: ["update", "-qq"], env, stdout: "null" })
    .output();
  if (!update.success) say("apt-get update failed; trying the install anyway");
  const out = await new Deno.Command("apt-get", {
    args: ["install", "-y", "-qq", "--no-install-recommends", ...packages],
    env,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    say(`apt-get install failed:\n${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return out.success;
}

async function main(): Promise<number> {
  const root = Deno.uid() === 0;
  const apt = await onPath("apt-get");
  const missing = new Set<string>();
  if (!liburingLoads()) {
    if (Deno.env.get("KCOPYD_LIBURING_PATH")) {
      say(
        `KCOPYD_LIBURING_PATH="${Deno.env.get("KCOPYD_LIBURING_PATH")}" cannot be loaded: ` +
          "point it at liburing.so.2, or unset it to use the system library",
      );
      return 1;
    }
    missing.add("liburing2");
  }
  if (values["for-tests"]) {
    for (const [tool, pkg] of Object.entries(TEST_TOOLS)) {
      if (!(await onPath(tool))) missing.add(pkg);
    }
    if (!(await exists(HEADER))) missing.add("liburing-dev");
  }
  if (missing.size > 0) {
    if (root && apt) {
      await aptInstall([...missing]);
    }
    if (!liburingLoads()) {
      const sudo = root ? "" : "sudo ";
      say(
        `liburing (liburing.so.2) is missing. Install it with: ${sudo}apt-get install liburing2 ` +
          "(or set KCOPYD_LIBURING_PATH to the library file)",
      );
      return 1;
    }
    const still: string[] = [];
    for (const [tool, pkg] of Object.entries(TEST_TOOLS)) {
      if (values["for-tests"] && !(await onPath(tool))) still.push(`${tool} (${pkg})`);
    }
    if (still.length > 0) {
      say(`tests that need ${still.join(", ")} will be skipped; install them with apt-get`);
    }
  }
  const disabled = await Deno.readTextFile("/proc/sys/kernel/io_uring_disabled").then(
    (s) => Number(s.trim()),
    () => 0,
  );
  if (disabled === 2) {
    say(
      "io_uring is disabled on this machine (kernel.io_uring_disabled = 2). " +
        "Enable it with: sysctl kernel.io_uring_disabled=0",
    );
    return 1;
  }
  return 0;
}

Deno.exit(await main());
