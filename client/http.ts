/**
 * A small typed client for the lab's HTTP API (docs/protocol.md §HTTP), for Deno and
 * browsers: submit, list, inspect, stop and delete runs. Errors the server names come back as
 * LabApiError with the field errors.
 */
import type { RunDetail, RunSummary } from "../server/runs/manager.ts";

export type { RunDetail, RunSummary };

export interface FieldError {
  field: string;
  message: string;
}

export class LabApiError extends Error {
  constructor(message: string, readonly status: number, readonly errors: FieldError[] = []) {
    super(message);
    this.name = "LabApiError";
  }
}

export class LabHttp {
  readonly base: string;

  constructor(base: string, readonly token?: string) {
    this.base = base.replace(/\/+$/, "");
  }

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const raw = body instanceof Uint8Array;
    if (body !== undefined) {
      headers["content-type"] = raw ? "application/octet-stream" : "application/json";
    }
    const res = await fetch(this.base + path, {
      method,
      headers,
      body: body === undefined
        ? undefined
        : raw
        ? body as Uint8Array<ArrayBuffer>
        : JSON.stringify(body),
    });
    const text = await res.text();
    let data: unknown = text;
    try {
      data = JSON.parse(text);
    } catch { /* CSV or an error page: keep the text */ }
    if (!res.ok) {
      const d = data as { error?: string; errors?: FieldError[] };
      throw new LabApiError(
        d?.error ?? `${method} ${path}: HTTP ${res.status}`,
        res.status,
        d?.errors,
      );
    }
    return data as T;
  }

  /** Queues a run; resolves to its id. */
  async submit(spec: unknown): Promise<string> {
    return (await this.#call<{ id: string }>("POST", "/api/runs", spec)).id;
  }

  /** Runs, optionally filtered: q (words in id, name, tags, note), experiment, status. */
  runs(query: { q?: string; experiment?: string; status?: string } = {}): Promise<RunSummary[]> {
    const qs = new URLSearchParams(
      Object.entries(query).filter((e): e is [string, string] => typeof e[1] === "string"),
    ).toString();
    return this.#call("GET", "/api/runs" + (qs ? `?${qs}` : ""));
  }

  /** Renames, retags or annotates a run (also after it ended). */
  annotate(
    id: string,
    fields: { name?: string; tags?: string[]; note?: string },
  ): Promise<RunSummary> {
    return this.#call("PATCH", `/api/runs/${encodeURIComponent(id)}`, fields);
  }

  /** Uploads a run log (from `lab run --out=DIR`) as a run of this lab; resolves to its id. */
  async importLog(bytes: Uint8Array): Promise<string> {
    return (await this.#call<{ id: string }>("POST", "/api/runs/import", bytes)).id;
  }

  run(id: string): Promise<RunDetail> {
    return this.#call("GET", `/api/runs/${encodeURIComponent(id)}`);
  }

  stop(id: string): Promise<{ id: string; status: string }> {
    return this.#call("POST", `/api/runs/${encodeURIComponent(id)}/stop`);
  }

  remove(id: string): Promise<{ id: string; deleted: boolean }> {
    return this.#call("DELETE", `/api/runs/${encodeURIComponent(id)}`);
  }

  metricsCsv(id: string): Promise<string> {
    return this.#call("GET", `/api/runs/${encodeURIComponent(id)}/metrics.csv`);
  }

  health(): Promise<Record<string, unknown>> {
    return this.#call("GET", "/api/health");
  }
}
