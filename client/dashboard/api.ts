/** The lab's HTTP API as the dashboard uses it (see docs/protocol.md). */
import type { MetricSpec, ParamSchema } from "../../server/experiments/schema.ts";
import type { RunSummary } from "../../server/runs/manager.ts";
import type { NatsHealth, WorkerInfo } from "../../server/cluster/coordinator.ts";
import { accessToken } from "./token.ts";

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
  /** Present when the lab is a multi-box coordinator (--nats). */
  nats?: NatsHealth;
}

/** Health's `nats` field and GET /api/workers' entries, as the coordinator defines them. */
export type { NatsHealth, WorkerInfo };

export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly errors: FieldError[] = []) {
    super(message);
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  const token = accessToken();
  if (token) headers.authorization = `Bearer ${token}`;
  // A Blob is a run log for the import route, sent as is; every other body is JSON.
  const raw = body instanceof Blob;
  if (body !== undefined) {
    headers["content-type"] = raw ? "application/octet-stream" : "application/json";
  }
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
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
  workers: () => call<WorkerInfo[]>("GET", "/api/workers"),
  start: (spec: Record<string, unknown>) => call<{ id: string }>("POST", "/api/runs", spec),
  stop: (id: string) => call<unknown>("POST", `/api/runs/${encodeURIComponent(id)}/stop`),
  resume: (id: string) => call<unknown>("POST", `/api/runs/${encodeURIComponent(id)}/resume`),
  remove: (id: string) => call<unknown>("DELETE", `/api/runs/${encodeURIComponent(id)}`),
  /** Renames, tags or annotates a run after the fact (PATCH /api/runs/:id, docs/protocol.md). */
  annotate: (id: string, fields: { name?: string; tags?: string[]; note?: string }) =>
    call<unknown>("PATCH", `/api/runs/${encodeURIComponent(id)}`, fields),
  /** Uploads a run log written elsewhere (`lab run --out=DIR`); the one raw-bytes route. */
  importLog: (log: Blob) => call<{ id: string }>("POST", "/api/runs/import", log),
};
