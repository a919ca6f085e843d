/** Maps the errors a user can cause to HTTP answers: status and a body naming the problem. */
import { SpecError } from "../experiments/schema.ts";
import { BackendUnavailableError } from "../engine/open.ts";
import { QueueFullError, RunTooLargeError, StoreUnavailableError } from "../runs/manager.ts";
import { ImportError } from "../runs/import.ts";
import { ComputeUnavailableError } from "../runs/executor.ts";
import { redactPaths } from "../redact_paths.ts";

export interface ErrorBody {
  error: string;
  errors?: { field: string; message: string }[];
}

/** Seconds a client should wait before submitting again when the queue is full. */
const RETRY_AFTER_S = 10;

export function userError(
  e: unknown,
):
  | { status: 400 | 409 | 413 | 429 | 503 | 507; body: ErrorBody; headers?: Record<string, string> }
  | undefined {
  if (e instanceof QueueFullError) {
    return {
      status: 429,
      body: { error: e.message },
      headers: { "retry-after": String(RETRY_AFTER_S) },
    };
  }
  if (e instanceof StoreUnavailableError) {
    return { status: e.diskFull ? 507 : 503, body: { error: e.message } };
  }
  if (e instanceof ComputeUnavailableError) {
    return { status: 503, body: { error: e.message }, headers: { "retry-after": "5" } };
  }
  if (e instanceof ImportError) {
    return { status: e.status, body: { error: `cannot import: ${e.message}` } };
  }
  if (e instanceof SpecError) {
    return { status: 400, body: { error: `invalid run spec: ${e.message}`, errors: e.errors } };
  }
  if (e instanceof RunTooLargeError) {
    return { status: 413, body: { error: `run too large: ${e.message}`, errors: e.errors } };
  }
  if (e instanceof BackendUnavailableError) {
    return {
      status: 400,
      body: { error: e.message, errors: [{ field: "backend", message: e.message }] },
    };
  }
  return undefined;
}

/** What a failed filesystem call means to the person asking, by its errno code. */
const FS_TROUBLE: Record<string, string> = {
  ENOSPC: "the disk holding the lab's data is full",
  EDQUOT: "the disk quota for the lab's data is used up",
  EROFS: "the lab's data directory is read-only",
  EACCES: "the lab may not access its data (permission denied)",
  EPERM: "the lab may not access its data (operation not permitted)",
  ENOENT: "a file the lab needs is missing",
  EMFILE: "the lab has too many open files",
  ENFILE: "the system has too many open files",
  EIO: "an I/O error on the lab's disk",
  EINVAL: "an invalid file name",
};

/**
 * An unexpected error as a client may read it: never the raw message of a filesystem error
 * (it names paths), only what went wrong in words and its errno code; other errors with any
 * path taken out. The full error goes to the server's log.
 */
export function describeInternalError(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) {
    const trouble = FS_TROUBLE[code] ?? "a filesystem error";
    return `${trouble} (${code}); details are in the server's log`;
  }
  return redactPaths(err instanceof Error ? err.message : String(err));
}

/** The body of a 500. */
export function internalErrorBody(err: unknown): ErrorBody {
  return { error: `internal error: ${describeInternalError(err)}` };
}
