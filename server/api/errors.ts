/** Maps the errors a user can cause to HTTP answers: status and a body naming the problem. */
import { SpecError } from "../experiments/schema.ts";
import { BackendUnavailableError } from "../engine/open.ts";
import { QueueFullError, RunTooLargeError, StoreUnavailableError } from "../runs/manager.ts";

export interface ErrorBody {
  error: string;
  errors?: { field: string; message: string }[];
}

/** Seconds a client should wait before submitting again when the queue is full. */
const RETRY_AFTER_S = 10;

export function userError(
  e: unknown,
):
  | { status: 400 | 413 | 429 | 503 | 507; body: ErrorBody; headers?: Record<string, string> }
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
