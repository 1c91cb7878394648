import type { Write } from "../../../ports/storage.ts";
import { auditWrites } from "./audit.ts";
import { certificateWrites } from "./certificates.ts";
import { deviceWrites } from "./devices.ts";
import { enrollmentWrites } from "./enrollments.ts";
import { mqttWrites } from "./mqtt.ts";
import { operatorWrites } from "./operators.ts";
import { PRECONDITIONS } from "./preconditions.ts";
import { tokenWrites } from "./tokens.ts";
import { trustBundleWrites } from "./trust-bundles.ts";
import { workloadWrites } from "./workloads.ts";
import type { WriteEntry, WriteTable } from "./write-entry.ts";

/** Every kind of write, by kind (a kind without an entry does not compile). */
const WRITES: WriteTable = {
  ...deviceWrites,
  ...certificateWrites,
  ...tokenWrites,
  ...enrollmentWrites,
  ...operatorWrites,
  ...auditWrites,
  ...mqttWrites,
  ...trustBundleWrites,
  ...workloadWrites,
};

/** The entry of a write: by its kind, and for a `require` by its precondition. */
export function writeEntry(w: Write): WriteEntry {
  return w.kind === "require" ? PRECONDITIONS[w.precondition.name] : WRITES[w.kind];
}
