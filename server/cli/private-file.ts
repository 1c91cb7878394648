import { randomBytes } from "node:crypto";
import { closeSync, constants, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

/** O_EXCL: a name that exists (a planted symlink included, never followed) fails with EEXIST. */
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

/**
 * Writes a file only its owner may read (secrets: decrypted CA keys, tokens): a new temp
 * file with a random name next to it, opened O_EXCL (never an existing file, never
 * through a symlink), made 0600 with fchmod before any data is in it (whatever the
 * umask, and whatever mode an earlier file of that name had), fsynced, then renamed over
 * `file`. `tempSuffix` is the random part of the temp name (tests fix it).
 */
export function writePrivateFile(
  file: string,
  data: string,
  tempSuffix: () => string = () => randomBytes(12).toString("hex"),
): void {
  const tmp = `${file}.tmp-${tempSuffix()}`;
  const fd = openSync(tmp, CREATE_NEW, 0o600);
  try {
    fchmodSync(fd, 0o600);
    writeSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
