/**
 * The error for a device that cannot be opened or used.
 *
 * @module
 */

/** An open device or image file failed to open, or is not something we can copy to or from. */
export class DeviceError extends Error {
  /** The path as given. */
  readonly path: string;
  /** An errno name such as `"EBUSY"`, or `"ENOTBLK"` for the wrong kind of file. */
  readonly code: string;

  /**
   * Creates the error.
   *
   * @param path The path.
   * @param code The errno name.
   * @param message The full message.
   */
  constructor(path: string, code: string, message: string) {
    super(message);
    this.name = "DeviceError";
    this.path = path;
    this.code = code;
  }
}
