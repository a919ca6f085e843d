/**
 * The disk a run's log will take, projected from its spec before anything is written:
 * snapshots (every metric for every replica), frames, and events, each with its framing and
 * msgpack overhead. Runs over the limit are refused at submission (docs/storage.md).
 */
import type { RunSpec } from "../experiments/types.ts";
import { getExperiment } from "../experiments/registry.ts";

/** Framing (12 bytes) plus the msgpack keys and scalars of a snapshot, frame or event. */
const RECORD_OVERHEAD = 96;
/** Per metric in a snapshot: its name and the typed-array header. */
const METRIC_OVERHEAD = 32;
/** Summary pyramid and snapshot index beside the log, as a fraction of the snapshots' bytes. */
const DERIVED_FRACTION = 0.25;

export function projectedSnapshots(spec: RunSpec): number {
  return Math.floor(spec.steps / Math.max(1, spec.every)) + 2;
}

export function projectLogBytes(spec: RunSpec): number {
  const exp = getExperiment(spec.experiment);
  const R = spec.replicas;
  const snapshots = projectedSnapshots(spec);
  const perSnapshot = RECORD_OVERHEAD + exp.metrics.length * (METRIC_OVERHEAD + 4 * R);
  let frames = 0;
  for (const f of exp.frames ?? []) {
    const floats = f.projectedFloats?.(spec) ?? 0;
    const count = Math.ceil(snapshots / Math.max(1, f.everySnapshots)) + 2;
    frames += floats * 4 + count * RECORD_OVERHEAD;
  }
  const events = (exp.plannedEvents(spec).length + R + 8) * RECORD_OVERHEAD;
  const snapshotBytes = snapshots * perSnapshot;
  return Math.ceil(snapshotBytes * (1 + DERIVED_FRACTION) + frames + events);
}
