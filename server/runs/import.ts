/**
 * Importing a run log written elsewhere (`lab run --out=DIR`, or a log downloaded from another
 * lab) as a run of this lab: `POST /api/runs/import` and `lab import PATH --server=URL`. The
 * bytes are read with the store's own parser and written back by the store (RunStore.write), so
 * the imported log is framed exactly like the lab's own; nothing here reads bytes by hand.
 */
import { validateRunSpec } from "../experiments/registry.ts";
import { SpecError } from "../experiments/schema.ts";
import { RUN_ID_PATTERN } from "./ids.ts";
import type { BodyRecord, HeaderRecord } from "./records.ts";
import { parseRunLog } from "./runlog.ts";

/** The upload is not a run log (400) or names a run this lab already has (409). */
export class ImportError extends Error {
  constructor(message: string, readonly status: 400 | 409) {
    super(message);
    this.name = "ImportError";
  }
}

/** Largest log accepted by upload. */
export const MAX_IMPORT_BYTES = 1024 * 1024 * 1024;

/**
 * Parses and checks an uploaded log: a lab run log with a valid id and a spec this lab can
 * validate. An id the lab already has is refused (409) rather than renamed: importing the same
 * file twice is then harmless, and the id stays the one printed when the run was made.
 */
export function checkImportedLog(
  bytes: Uint8Array,
  exists: (id: string) => boolean,
): { header: HeaderRecord; records: BodyRecord[] } {
  let log;
  try {
    log = parseRunLog(bytes, "the upload");
  } catch (e) {
    throw new ImportError(e instanceof Error ? e.message : String(e), 400);
  }
  const { header, records } = log;
  if (typeof header.id !== "string" || !RUN_ID_PATTERN.test(header.id)) {
    throw new ImportError(`the log's run id ${JSON.stringify(header.id)} is not a valid id`, 400);
  }
  try {
    validateRunSpec(header.spec);
  } catch (e) {
    const why = e instanceof SpecError ? e.message : String(e);
    throw new ImportError(`the log's spec is not valid here: ${why}`, 400);
  }
  if (exists(header.id)) {
    throw new ImportError(`run ${header.id} already exists on this lab`, 409);
  }
  return { header, records };
}
