/** Maps the errors a user can cause to HTTP answers: status and a body naming the problem. */
import { SpecError } from "../experiments/schema.ts";
import { BackendUnavailableError } from "../engine/open.ts";
import { RunTooLargeError } from "../runs/manager.ts";
import { ImportError } from "../runs/import.ts";

export interface ErrorBody {
  error: string;
  errors?: { field: string; message: string }[];
}

export function userError(
  e: unknown,
): { status: 400 | 409 | 413; body: ErrorBody } | undefined {
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
