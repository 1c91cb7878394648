/**
 * `writePrivateFile` (what `edgeid worker dev-vars` writes its decrypted CA keys with):
 * 0600 whatever was there before, O_EXCL on a random temp name, never through a symlink.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writePrivateFile } from "../../server/cli/private-file.ts";

const mode = (file: string) => statSync(file).mode & 0o777;

describe("writePrivateFile", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "edgeid-private-file-"));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("rewrites an existing 0644 .dev.vars 0600, whatever the umask", () => {
    const file = join(dir, ".dev.vars");
    writeFileSync(file, "old\n");
    chmodSync(file, 0o644);
    const old = process.umask(0o000);
    try {
      writePrivateFile(file, 'CA_KEY="secret"\n');
    } finally {
      process.umask(old);
    }
    expect(mode(file)).toBe(0o600);
    expect(readFileSync(file, "utf8")).toBe('CA_KEY="secret"\n');
  });

  it("refuses a symlink planted at the temp name and leaves its target alone", () => {
    const file = join(dir, ".dev.vars");
    const victim = join(dir, "victim");
    writeFileSync(victim, "not ours\n");
    symlinkSync(victim, `${file}.tmp-planted`);
    expect(() => writePrivateFile(file, "secret\n", () => "planted")).toThrow(/EEXIST/);
    expect(readFileSync(victim, "utf8")).toBe("not ours\n");
    expect(() => statSync(file)).toThrow(/ENOENT/);
  });

  it("replaces a symlink at the destination instead of writing through it", () => {
    const file = join(dir, ".dev.vars");
    const victim = join(dir, "victim");
    writeFileSync(victim, "not ours\n");
    symlinkSync(victim, file);
    writePrivateFile(file, "secret\n");
    expect(readFileSync(victim, "utf8")).toBe("not ours\n");
    expect(readFileSync(file, "utf8")).toBe("secret\n");
    expect(mode(file)).toBe(0o600);
  });
});
