/** The one-line live progress of a run: step, speed, ETA and the replica means of metrics. */
import type { RunSpec } from "../experiments/types.ts";
import type { SnapshotRecord } from "../runs/records.ts";

import { formatNumber as fmt } from "./numbers.ts";

function duration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, "0")}m`;
}

export function formatProgress(
  snap: SnapshotRecord,
  spec: RunSpec,
  elapsedS: number,
  metrics: string[],
): string {
  const rate = elapsedS > 0 ? snap.step / elapsedS : 0;
  const eta = rate > 0 ? (spec.steps - snap.step) / rate : Infinity;
  const pct = spec.steps > 0 ? (100 * snap.step / spec.steps).toFixed(1) : "100";
  const parts = metrics.map((m) => {
    const v = snap.metrics[m];
    let s = 0, c = 0;
    for (const x of v ?? []) if (Number.isFinite(x)) s += x, c++;
    return `${m}=${c ? fmt(s / c) : "NaN"}`;
  });
  return `step ${snap.step}/${spec.steps} (${pct}%) ${fmt(rate)} steps/s ETA ${duration(eta)} | ${
    parts.join(" ")
  }`;
}
