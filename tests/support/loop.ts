import { makeImage } from "./image.ts";
import { hasCommand, run } from "./run.ts";

/** A loop device attached for a test; detached on dispose. */
export interface Loop extends AsyncDisposable {
  /** `/dev/loopN`. */
  readonly path: string;
}

/** Whether loop devices can be used here, and if not, why. */
export async function canUseLoop(): Promise<{ ok: boolean; reason: string }> {
  if (Deno.uid() !== 0) return { ok: false, reason: "loop devices need root" };
  if (!(await hasCommand("losetup"))) return { ok: false, reason: "losetup is missing" };
  const ctl = await Deno.stat("/dev/loop-control").then(() => true, () => false);
  if (!ctl) return { ok: false, reason: "/dev/loop-control is missing" };
  return { ok: true, reason: "" };
}

/** Attaches `file` to a free loop device. */
export async function attachLoop(
  file: string,
  options: { sectorSize?: number; directIo?: boolean; readOnly?: boolean } = {},
): Promise<Loop> {
  const args = ["--find", "--show"];
  if (options.sectorSize) args.push("--sector-size", `${options.sectorSize}`);
  if (options.directIo) args.push("--direct-io=on");
  if (options.readOnly) args.push("--read-only");
  const path = await run("losetup", ...args, file);
  return {
    path,
    async [Symbol.asyncDispose]() {
      for (let i = 0; i < 50; i++) {
        try {
          await run("losetup", "-d", path);
          return;
        } catch {
          await new Promise((r) => setTimeout(r, 50)); // EBUSY while a holder closes
        }
      }
    },
  };
}

/** A loop device over a fresh image; both go away on dispose. */
export interface LoopImage extends Loop {
  /** The image file behind the loop device. */
  readonly image: string;
}

/** Makes an image of `bytes` (random for `seed`, or filled with `byte`) and attaches it. */
export async function loopImage(
  bytes: number,
  options: { seed?: number; byte?: number; sectorSize?: number } = {},
): Promise<LoopImage> {
  const image = await makeImage(bytes, options);
  const loop = await attachLoop(image, { sectorSize: options.sectorSize });
  return {
    image,
    path: loop.path,
    async [Symbol.asyncDispose]() {
      await loop[Symbol.asyncDispose]();
      await Deno.remove(image);
    },
  };
}
