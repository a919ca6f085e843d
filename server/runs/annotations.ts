/**
 * Names, tags and notes of runs: given in the spec, changed later by `annotation` records
 * appended to the run's log (also once the run has ended; the latest value of each field
 * wins), and matched by the runs list's search (`GET /api/runs?q=…&experiment=…&status=…`).
 */
import { validateLabels } from "../experiments/registry.ts";
import { type FieldError, SpecError } from "../experiments/schema.ts";
import type { RunSpec } from "../experiments/types.ts";
import type { AnnotationRecord } from "./records.ts";

export interface RunLabels {
  name?: string;
  tags: string[];
  note?: string;
}

export type AnnotationFields = Pick<AnnotationRecord, "name" | "tags" | "note">;

export function labelsOfSpec(spec: RunSpec): RunLabels {
  return {
    ...(spec.name ? { name: spec.name } : {}),
    tags: spec.tags ?? [],
    ...(spec.note ? { note: spec.note } : {}),
  };
}

/** Folds one annotation into a run's labels: the fields it carries replace the old ones. */
export function applyAnnotation(labels: RunLabels, r: AnnotationFields): void {
  if (r.name !== undefined) {
    if (r.name) labels.name = r.name;
    else delete labels.name;
  }
  if (r.tags !== undefined) labels.tags = [...r.tags];
  if (r.note !== undefined) {
    if (r.note) labels.note = r.note;
    else delete labels.note;
  }
}

/**
 * The body of `PATCH /api/runs/:id`: `{name?, tags?, note?}`, at least one. An empty name or
 * note clears it; `tags` replaces the list. Throws SpecError naming the field.
 */
export function validateAnnotation(body: unknown): AnnotationFields {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new SpecError([{
      field: "(body)",
      message: "must be a JSON object {name?, tags?, note?}",
    }]);
  }
  const input = body as Record<string, unknown>;
  const errors: FieldError[] = [];
  for (const k of Object.keys(input)) {
    if (!["name", "tags", "note"].includes(k)) {
      errors.push({ field: k, message: "unknown field; allowed: name, tags, note" });
    }
  }
  const labels = validateLabels(input, errors);
  if (errors.length) throw new SpecError(errors);
  const out: AnnotationFields = {};
  if (input.name !== undefined) out.name = labels.name ?? "";
  if (input.tags !== undefined) out.tags = labels.tags ?? [];
  if (input.note !== undefined) out.note = labels.note ?? "";
  if (Object.keys(out).length === 0) {
    throw new SpecError([{ field: "(body)", message: "give at least one of name, tags, note" }]);
  }
  return out;
}

export interface RunQuery {
  /** Words that must each appear in the id, experiment, name, a tag or the note. */
  q?: string;
  experiment?: string;
  /** One status or several, comma-separated. */
  status?: string;
}

export function runMatches(
  run: { id: string; experiment: string; status: string } & Partial<RunLabels>,
  query: RunQuery,
): boolean {
  if (query.experiment && run.experiment !== query.experiment) return false;
  if (query.status && !query.status.split(",").map((s) => s.trim()).includes(run.status)) {
    return false;
  }
  const words = (query.q ?? "").toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const text = [run.id, run.experiment, run.name ?? "", ...(run.tags ?? []), run.note ?? ""]
    .join("\n").toLowerCase();
  return words.every((w) => text.includes(w));
}
