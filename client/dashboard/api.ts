/** The lab's HTTP API as the dashboard uses it (see docs/protocol.md). */
import type { MetricSpec, ParamSchema } from "../../server/experiments/schema.ts";
import type { RunSummary } from "../../server/runs/manager.ts";

export interface ExperimentInfo {
  id: string;
  title: string;
  paper: string;
  notes: string;
  params: ParamSchema;
  metrics: MetricSpec[];
  frames?: { name: string; doc: string }[];
  defaults: { steps: number; every: number; replicas: number };
}

/** GET /api/runs answers with the run manager's summaries. */
export type { RunSummary };

export interface Health {
  ok: boolean;
  version: string;
  backends: Record<string, { available: boolean; adapter?: string; reason?: string }>;
  default_backend: string;
  runs_in_flight?: number;
}

export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly errors: FieldError[] = []) {
    super(message);
  }
}

/** Adds the access token, when the page was opened with ?token=…, to API requests. */
export function withToken(path: string): string {
  const token = new URLSearchParams(location.search).get("token");
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(withToken(path), {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  // deno-lint-ignore no-explicit-any
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (!res.ok) {
    throw new ApiError(data?.error ?? `${method} ${path}: ${res.status}`, res.status, data?.errors);
  }
  return data as T;
}

export const api = {
  experiments: () => call<ExperimentInfo[]>("GET", "/api/experiments"),
  health: () => call<Health>("GET", "/api/health"),
  runs: () => call<RunSummary[]>("GET", "/api/runs"),
  start: (spec: Record<string, unknown>) => call<{ id: string }>("POST", "/api/runs", spec),
  stop: (id: string) => call<unknown>("POST", `/api/runs/${encodeURIComponent(id)}/stop`),
  resume: (id: string) => call<unknown>("POST", `/api/runs/${encodeURIComponent(id)}/resume`),
  remove: (id: string) => call<unknown>("DELETE", `/api/runs/${encodeURIComponent(id)}`),
  csvUrl: (id: string) => withToken(`/api/runs/${encodeURIComponent(id)}/metrics.csv`),
};
