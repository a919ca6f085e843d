/** What `GET /api/health` says about the compute backends (probed once, then cached). */
import type { BackendName } from "../experiments/types.ts";
import { EXPERIMENTS } from "../experiments/registry.ts";
import { probeBackend, resolveBackend } from "../engine/open.ts";
import { redactPaths } from "../redact_paths.ts";

export interface BackendReport {
  backends: Record<
    string,
    { available: boolean; adapter: string; fallback: boolean; reason?: string }
  >;
  default_backend: string;
}

let cached: Promise<BackendReport> | undefined;

export function backendReport(): Promise<BackendReport> {
  cached ??= (async () => {
    const names: BackendName[] = ["webgpu", "wasm", "reference"];
    const backends: BackendReport["backends"] = {};
    for (const name of names) {
      const probe = await probeBackend(name);
      // Health is readable without the token: a probe's error must not say where files are.
      backends[name] = probe.reason ? { ...probe, reason: redactPaths(probe.reason) } : probe;
    }
    const first = Object.keys(EXPERIMENTS)[0];
    let default_backend = "none";
    try {
      default_backend = (await resolveBackend("auto", first)).name;
    } catch { /* reported through the probes */ }
    return { backends, default_backend };
  })();
  return cached;
}
