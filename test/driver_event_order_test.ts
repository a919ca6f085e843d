/**
 * The driver's record order at a step that has a planned event, a snapshot and session events
 * (server/runs/driver.ts, docs/protocol.md "Records"): planned events first, then the
 * snapshot, then the session's events (those of reaching the step before those decided at the
 * start of its update), however the run is split into advance() calls. The split depends on
 * timing and differs after a resume, so any other rule makes records depend on it (issue 11).
 * A fake session makes the split and the events exact.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import type { AdvanceResult, KernelSession, RunEvent } from "../server/experiments/types.ts";
import { driveRun } from "../server/runs/driver.ts";
import { RunRecorder } from "../server/runs/recorder.ts";
import { newRunHeader } from "../server/runs/header.ts";
import { type BodyRecord, expandSnapshots } from "../server/runs/records.ts";

const ANNEAL = 6;

// large-lr's step rule plans a phase_change at anneal_step (largeLrPlannedEvents).
const spec = validateRunSpec({
  experiment: "large-lr",
  backend: "reference",
  steps: 12,
  every: 2,
  replicas: 1,
  params: { algo: "large-then-small", anneal: "step", anneal_step: ANNEAL },
});

/**
 * A session that, like the P/Q sessions, reports a note on reaching ANNEAL (in the call that
 * reaches it) and the anneal it decides at the start of update ANNEAL (in the call that runs
 * it); its advance() never goes past the next of `cuts`.
 */
function fakeSession(cuts: (step: number) => number): KernelSession {
  let step = 0;
  const snapshot = (at: number) => ({
    step: at,
    wallMs: at,
    metrics: { train_loss: Float32Array.of(1 / (1 + at)) },
  });
  return {
    backend: "reference",
    adapter: "fake",
    get step() {
      return step;
    },
    advance(target: number): Promise<AdvanceResult> {
      const to = Math.min(target, cuts(step), spec.steps);
      const result: AdvanceResult = { snapshots: [], events: [], frames: [] };
      if (step === 0) result.snapshots.push(snapshot(0));
      for (; step < to; step++) {
        if (step === ANNEAL) {
          const e: RunEvent = { type: "phase_change", step, phase: "anneal", replica: 0 };
          result.events.push(e, { type: "note", step, detail: "values at the anneal" });
        }
        if (step + 1 === ANNEAL) {
          result.events.push({ type: "note", step: ANNEAL, detail: "reached the anneal step" });
        }
        if ((step + 1) % spec.every === 0) result.snapshots.push(snapshot(step + 1));
      }
      return Promise.resolve(result);
    },
    dispose() {},
  };
}

async function recordsOf(cuts: (step: number) => number): Promise<string[]> {
  const session = fakeSession(cuts);
  const recorder = new RunRecorder(newRunHeader("order", spec, "reference", "fake"));
  const records: BodyRecord[] = [];
  recorder.listen((batch) => records.push(...expandSnapshots(batch)));
  // A huge chunk: after its first call the driver asks for the end of the run at once.
  const result = await driveRun(session, spec, recorder, { chunkMs: 1e9 });
  assert.equal(result.status, "finished");
  return records.flatMap((r) => {
    if (r.type === "snapshot") return [`snapshot ${r.step}`];
    if (r.type === "event") {
      const e = r.event as { step: number; type: string; detail?: string; phase?: string };
      return [[e.step, e.type, e.phase, e.detail].filter((x) => x !== undefined).join(" ")];
    }
    return [];
  });
}

Deno.test("at a step: planned events, the snapshot, then the session's events, in any call split", async () => {
  const expected = [
    "snapshot 0",
    "snapshot 2",
    "snapshot 4",
    "6 phase_change anneal all replicas: lr η1 → η2",
    "snapshot 6",
    "6 note reached the anneal step",
    "6 phase_change anneal",
    "6 note values at the anneal",
    "snapshot 8",
    "snapshot 10",
    "snapshot 12",
  ];
  const splits: Record<string, (step: number) => number> = {
    "as the driver asks": () => Infinity,
    "one step per call": (step) => step + 1,
    "one snapshot per call": (step) => step + spec.every,
    "a call ending at the anneal step": (step) => step < ANNEAL ? ANNEAL : Infinity,
    "calls ending just before and after it": (step) =>
      step < ANNEAL - 1 ? ANNEAL - 1 : step < ANNEAL + 1 ? ANNEAL + 1 : Infinity,
  };
  for (const [name, cuts] of Object.entries(splits)) {
    assert.deepEqual(await recordsOf(cuts), expected, name);
  }
});
