/**
 * A session opened from a checkpoint continues exactly: for each experiment and backend
 * (reference, wasm, webgpu), a run advanced straight to N gives the same snapshots (every
 * metric, bit for bit), events and frames as a run advanced to k, exported, opened from that
 * state in a fresh session (through a msgpack round trip, as the checkpoint file stores it)
 * and advanced to N with the same targets. The P/Q runs also resume just before, at and just
 * after each of their loss-triggered anneals, stops, race crossings and floor notes. Also: a
 * wasm checkpoint opened on the reference continues within the parity tolerance (P/Q: with
 * the same events), wasm and webgpu checkpoints opened on each other continue within the
 * WebGPU parity tests' tolerances, a replay state reopens by recomputing, and a state of
 * another spec is refused.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import type {
  AdvanceResult,
  BackendName,
  KernelSession,
  RunEvent,
  RunSpec,
  SessionState,
} from "../server/experiments/types.ts";
import { openSession } from "../server/engine/open.ts";
import { decodeRecord, encodeRecord } from "../server/runs/records.ts";
import { replayState } from "../server/engine/session_state.ts";
import { getGpu } from "../server/engine/webgpu/device.ts";
import { generateRunData, patternPairs, pqShape } from "../server/experiments/pq_model.ts";
import { relClose } from "./parity_helpers.ts";
import { metricClose } from "./linear_label_noise_parity.ts";

await ensureWasm();

/** Small runs of each experiment, with something happening in the second half. */
export const CHECKPOINT_SPECS: Record<string, Omit<RunSpec, "backend">> = {
  "shape-matters": validateRunSpec({
    experiment: "shape-matters",
    replicas: 3,
    steps: 120,
    every: 10,
    // Replica 1 diverges; the schedule halves the rate at 70.
    params: { d: 30, n: 12, lr: [0.01, 10, 0.02], algo: "label-noise", lr_schedule: [[70, 0.5]] },
  }),
  pegr: validateRunSpec({
    experiment: "pegr",
    replicas: 2,
    steps: 60,
    every: 10,
    params: { algo: "pegr", d: 20, n: 6, m: 3, n_test: 20, pegr_off: 45 },
  }),
  // The theory's stopping rule: loss-triggered anneals at steps 1 and 2, replica 0 stops at
  // 81, the P-only loss crosses race_loss at the first snapshot.
  "large-lr": validateRunSpec({
    experiment: "large-lr",
    replicas: 2,
    steps: 120,
    every: 10,
    params: {
      d: 10,
      m: 6,
      n_test: 20,
      stop: "loss",
      epsilon1: 0.2,
      eta2: 4,
      race_loss: 0.6,
    },
  }),
  // Loss-triggered anneals at 20 and 80 (checked every 10 steps), replica 0 stops at 220, P
  // race crossings at 20 and 60.
  "label-noise-anneal": validateRunSpec({
    experiment: "label-noise-anneal",
    replicas: 2,
    steps: 300,
    every: 20,
    params: {
      d: 10,
      m: 6,
      n_test: 20,
      anneal: "loss",
      epsilon1: 0.2,
      eta2: 1.5,
      stop: "loss",
      anneal_check_every: 10,
      race_loss: 0.6,
    },
  }),
  "linear-label-noise": validateRunSpec({
    experiment: "linear-label-noise",
    replicas: 2,
    steps: 120,
    every: 10,
    params: { m: 9, d: 5, n: 8, n_test: 6, frame_every: 2, lr: [0.02, 0.01] },
  }),
};

async function collect(session: KernelSession, targets: number[]): Promise<AdvanceResult> {
  const all: AdvanceResult = { snapshots: [], events: [], frames: [] };
  for (const target of targets) {
    const r = await session.advance(target);
    all.snapshots.push(...r.snapshots);
    all.events.push(...r.events);
    all.frames.push(...r.frames);
  }
  return all;
}

/** Everything but wall times, with float arrays as bit patterns so NaN compares equal. */
function comparable(r: AdvanceResult) {
  const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
  return {
    snapshots: r.snapshots.map((s) => ({
      step: s.step,
      metrics: Object.fromEntries(Object.entries(s.metrics).map(([k, v]) => [k, bits(v)])),
    })),
    events: r.events,
    frames: r.frames.map((f) => ({ ...f, values: bits(f.values) })),
  };
}

/** A state as the checkpoint file stores it: msgpack and back. */
function roundTrip(state: SessionState): SessionState {
  return decodeRecord<SessionState>(encodeRecord(state));
}

/** The session's state; a session that cannot export gets a replay state, as the driver writes. */
async function stateOf(session: KernelSession, spec: RunSpec): Promise<SessionState> {
  return (await session.exportState?.()) ?? replayState(spec, session, 0);
}

async function checkResume(spec: RunSpec, k: number): Promise<SessionState> {
  const what = `${spec.experiment} on ${spec.backend}, checkpoint at ${k}`;
  const N = spec.steps;
  const targets = [k, ...[Math.floor((k + N) / 2), N].filter((t) => t > k)];
  const straight = await openSession(spec);
  const want = await collect(straight, targets);
  await straight.dispose();

  const first = await openSession(spec);
  const head = await collect(first, [k]);
  const state = await stateOf(first, spec);
  assert.equal(state.step, k);
  await first.dispose();
  const resumed = await openSession(spec, roundTrip(state));
  assert.equal(resumed.step, k);
  const tail = await collect(resumed, targets.slice(1));
  await resumed.dispose();
  const got: AdvanceResult = {
    snapshots: [...head.snapshots, ...tail.snapshots],
    events: [...head.events, ...tail.events],
    frames: [...head.frames, ...tail.frames],
  };
  assert.deepEqual(comparable(got), comparable(want), what);
  return state;
}

const BACKENDS: BackendName[] = ["reference", "wasm"];

const LOSS_ANNEAL = {
  what: "a loss-triggered anneal",
  seen: (e: RunEvent) =>
    e.type === "phase_change" && e.phase === "anneal" && e.replica !== undefined,
};
const STOP = {
  what: "a stop",
  seen: (e: RunEvent) => e.type === "phase_change" && e.phase === "stop",
};

for (const [experiment, base] of Object.entries(CHECKPOINT_SPECS)) {
  for (const backend of BACKENDS) {
    Deno.test(`${experiment} on ${backend} continues bit-identically from a checkpoint`, async () => {
      const spec = { ...base, backend };
      const state = await checkResume(spec, Math.round(spec.steps * 0.4));
      assert.ok(!state.replay, "the session exported its arrays, not a replay state");
      // A checkpoint not on a snapshot step, one late (after the P/Q anneals, the pegr
      // switch-off, the schedule's milestone), and one at the very end.
      await checkResume(spec, Math.round(spec.steps * 0.4) + 3);
      const late = await checkResume(spec, Math.round(spec.steps * 0.8));
      if (late.arrays.has_pattern) {
        assert.ok(late.arrays.has_pattern.some((x) => x), "an anneal happened before");
      }
      await checkResume(spec, spec.steps);
    });
  }
}

/** The spec with some parameters changed, validated again. */
function withParams(spec: Omit<RunSpec, "backend">, params: Record<string, unknown>) {
  return validateRunSpec({ ...spec, params: { ...spec.params, ...params } });
}

/**
 * P/Q runs whose state changes mid-run in ways the weights alone do not carry: the anneal
 * (lr, stored pattern, values at the anneal), the stop (frozen replica, values at the stop),
 * the race watch's first crossings and the floor watch's note. Each must happen in the
 * straight run; checkpoints go just before, at and just after each of their steps.
 */
const PQ_EVENT_RUNS: {
  name: string;
  spec: Omit<RunSpec, "backend">;
  expect: { what: string; seen: (e: RunEvent) => boolean }[];
  race: boolean;
}[] = [
  {
    name: "large-lr with the stopping rule",
    spec: CHECKPOINT_SPECS["large-lr"],
    expect: [LOSS_ANNEAL, STOP],
    race: true,
  },
  {
    name: "label-noise-anneal with the stopping rule",
    spec: CHECKPOINT_SPECS["label-noise-anneal"],
    expect: [LOSS_ANNEAL, STOP],
    race: true,
  },
  {
    // Separate widths (m_p ≠ m_q): W, V, the anneal copy and the pattern sized per block.
    name: "large-lr with m_p ≠ m_q and the stopping rule",
    spec: withParams(CHECKPOINT_SPECS["large-lr"], { m_p: 10, m_q: 4 }),
    expect: [LOSS_ANNEAL, STOP],
    race: true,
  },
  {
    name: "label-noise-anneal with m_p ≠ m_q and the stopping rule",
    spec: withParams(CHECKPOINT_SPECS["label-noise-anneal"], { m_p: 4, m_q: 8 }),
    expect: [LOSS_ANNEAL, STOP],
    race: true,
  },
  {
    // λ at the default lambda_scale holds the loss above the anneal threshold at d = 10: the
    // floor note at 140. Noise pairs: replica 1 repeats replica 0 without the gradient noise.
    name: "large-lr with the weight-decay floor note",
    spec: validateRunSpec({
      experiment: "large-lr",
      replicas: 2,
      steps: 160,
      every: 10,
      params: { d: 10, m: 6, n_test: 20, stop: "loss", noise_pairs: "on" },
    }),
    expect: [{
      what: "the floor note",
      seen: (e) => e.type === "note" && /settled at/.test(e.detail ?? ""),
    }],
    race: false,
  },
];

/** Snapshot steps at which a block's loss first crossed race_loss, from the last snapshot. */
function raceCrossings(r: AdvanceResult): number[] {
  const last = r.snapshots.at(-1)!;
  return ["race_p_step", "race_q_step"].flatMap((m) => Array.from(last.metrics[m]))
    .filter((s) => s >= 0);
}

type EventRun = (typeof PQ_EVENT_RUNS)[number];

function testAcrossEvents(run: EventRun, backend: BackendName) {
  Deno.test(`${run.name} on ${backend} continues bit-identically across its events`, async () => {
    if (backend === "webgpu") await getGpu(); // fails with instructions when there is no adapter
    const spec = { ...run.spec, backend };
    const session = await openSession(spec);
    const straight = await session.advance(spec.steps);
    await session.dispose();
    const steps = new Set<number>();
    for (const { what, seen } of run.expect) {
      const hits = straight.events.filter(seen);
      assert.ok(hits.length > 0, `${run.name} on ${backend}: ${what} did not happen`);
      hits.forEach((e) => steps.add(e.step));
    }
    if (run.race) {
      const crossings = raceCrossings(straight);
      assert.ok(crossings.some((s) => s > 0), `${run.name} on ${backend}: no race crossing`);
      crossings.forEach((s) => steps.add(s));
    }
    const checkpoints = new Set(
      [...steps].flatMap((s) => [s - 1, s, s + 1]).filter((k) => k > 0 && k < spec.steps),
    );
    for (const k of [...checkpoints].sort((a, b) => a - b)) await checkResume(spec, k);
  });
}

for (const run of PQ_EVENT_RUNS) for (const backend of BACKENDS) testAcrossEvents(run, backend);

/**
 * WebGPU runs (on the software adapter: slow, so the P/Q runs are shorter; the stopping rule
 * runs on the CPU backends only): the same runs otherwise, so that the divergence, the
 * schedule's milestone, the switch-off, the loss-triggered anneals (with their stored
 * patterns), the race crossings and the lazy escapes fall on both sides of a checkpoint.
 */
const WEBGPU_SPECS: Record<string, Omit<RunSpec, "backend">> = {
  ...CHECKPOINT_SPECS,
  // Loss-triggered anneals at steps 1 and 2; the P-only race crossing at 10.
  "large-lr": validateRunSpec({
    ...CHECKPOINT_SPECS["large-lr"],
    steps: 60,
    params: { ...CHECKPOINT_SPECS["large-lr"].params, stop: "off" },
  }),
  // Loss-triggered anneals at 20 and 80, P race crossings at 20 and 60.
  "label-noise-anneal": validateRunSpec({
    ...CHECKPOINT_SPECS["label-noise-anneal"],
    steps: 120,
    params: { ...CHECKPOINT_SPECS["label-noise-anneal"].params, stop: "off" },
  }),
};

for (const [experiment, base] of Object.entries(WEBGPU_SPECS)) {
  Deno.test(`${experiment} on webgpu continues bit-identically from a checkpoint`, async () => {
    await getGpu(); // fails with instructions when there is no adapter
    const spec = { ...base, backend: "webgpu" as const };
    const state = await checkResume(spec, Math.round(spec.steps * 0.4) + 3);
    assert.ok(!state.replay, "the session exported its arrays, not a replay state");
    assert.equal(state.backend, "webgpu");
    const late = await checkResume(spec, Math.round(spec.steps * 0.8));
    if (late.arrays.has_pattern) {
      assert.ok(late.arrays.has_pattern.some((x) => x), "an anneal happened before");
    }
  });
}

// The P/Q event runs on webgpu, without the stopping rule.
const eventRun = (name: string) => PQ_EVENT_RUNS.find((r) => r.name === name)!;
const largeLrEvents = eventRun("large-lr with the stopping rule");
const labelNoiseEvents = eventRun("label-noise-anneal with the stopping rule");
const floorEvents = eventRun("large-lr with the weight-decay floor note");
const WEBGPU_EVENT_RUNS: EventRun[] = [
  { ...largeLrEvents, name: "large-lr", spec: WEBGPU_SPECS["large-lr"], expect: [LOSS_ANNEAL] },
  {
    ...labelNoiseEvents,
    name: "label-noise-anneal",
    spec: WEBGPU_SPECS["label-noise-anneal"],
    expect: [LOSS_ANNEAL],
  },
  {
    ...floorEvents,
    spec: validateRunSpec({
      ...floorEvents.spec,
      params: { ...floorEvents.spec.params, stop: "off" },
    }),
  },
];
for (const run of WEBGPU_EVENT_RUNS) testAcrossEvents(run, "webgpu");

// Replay states (written by sessions that cannot export their arrays; older WebGPU
// checkpoints) reopen by recomputing to the state's step, then continue bit-identically.
Deno.test("a replay state reopens on webgpu by recomputing and continues bit-identically", async () => {
  await getGpu();
  const spec = { ...CHECKPOINT_SPECS["shape-matters"], backend: "webgpu" as const, steps: 40 };
  const straight = await openSession(spec);
  const want = await collect(straight, [23, 40]);
  await straight.dispose();
  const first = await openSession(spec);
  const head = await collect(first, [23]);
  const state = roundTrip(replayState(spec, first, 0));
  await first.dispose();
  const resumed = await openSession(spec, state);
  assert.equal(resumed.step, 23);
  const tail = await collect(resumed, [40]);
  await resumed.dispose();
  const got: AdvanceResult = {
    snapshots: [...head.snapshots, ...tail.snapshots],
    events: [...head.events, ...tail.events],
    frames: [...head.frames, ...tail.frames],
  };
  assert.deepEqual(comparable(got), comparable(want));
});

// The P/Q checkpoints are taken after the anneals and before a stop, so that the reference
// carries the wasm phases and watches on and takes the stop itself.
const CROSS_BACKEND: { experiment: string; at: number; params?: RunSpec["params"] }[] = [
  { experiment: "shape-matters", at: 60, params: { lr: 0.01 } },
  { experiment: "large-lr", at: 40 },
  { experiment: "label-noise-anneal", at: 100 },
];

for (const { experiment, at, params } of CROSS_BACKEND) {
  Deno.test(`a wasm ${experiment} checkpoint opened on the reference continues within float32 rounding`, async () => {
    const base = CHECKPOINT_SPECS[experiment];
    const spec = { ...base, backend: "wasm" as const, params: { ...base.params, ...params } };
    const wasm = await openSession(spec);
    await wasm.advance(at);
    const state = roundTrip((await wasm.exportState!())!);
    const tail = await collect(wasm, [spec.steps]);
    await wasm.dispose();
    const ref = await openSession({ ...spec, backend: "reference" }, state);
    const refTail = await collect(ref, [spec.steps]);
    const kinds = (r: AdvanceResult) =>
      r.events.map((e) => `${e.step} ${e.type} ${"phase" in e ? e.phase : ""}`);
    assert.deepEqual(kinds(refTail), kinds(tail));
    assert.deepEqual(refTail.snapshots.map((s) => s.step), tail.snapshots.map((s) => s.step));
    tail.snapshots.forEach((s, i) => {
      for (const [name, values] of Object.entries(s.metrics)) {
        values.forEach((v, r) => {
          const w = refTail.snapshots[i].metrics[name][r];
          assert.ok(
            Object.is(v, w) || Math.abs(v - w) <= 1e-4 * Math.max(1, Math.abs(w)),
            `step ${s.step}, ${name}[${r}]: ${v} vs ${w}`,
          );
        });
      }
    });
  });
}

/**
 * The WebGPU parity tests' tolerances (each test's header gives the reasoning; there against
 * the float64 reference, here between the two float32 kernels, whose differences are of the
 * same rounding): shape-matters 1e-4 relative + 1e-6; pegr 1e-4 relative + 1e-6 for inner
 * products and coefficients, one test point of accuracy; linear-label-noise as
 * linear_label_noise_parity.ts, the float32 balance residual < 5e-5 on both; P/Q 2e-4 of
 * max(|a|, |b|, scale), lr, anneal_step and error rates exact, one (example, unit) pair of
 * activation flips. NaN matches only NaN.
 */
const PQ_SCALE: Record<string, number> = { p_alignment: 1, q_second_diff: 0.1, g_z: 0.1 };
const PEGR_COEFFICIENTS = new Set(["signal", "noise", "gamma_max", "rho_bar_max", "rho_under_min"]);

function withinParity(spec: RunSpec, name: string, a: number, b: number, r: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  switch (spec.experiment) {
    case "shape-matters":
      return relClose(a, b, 1e-4, 1e-6);
    case "pegr":
      if (name === "test_accuracy") {
        return Math.abs(a - b) <= 1 / (spec.params.n_test as number) + 1e-7;
      }
      return relClose(a, b, 1e-4, PEGR_COEFFICIENTS.has(name) ? 1e-6 : 1e-9);
    case "linear-label-noise":
      return name === "balance_residual" ? a < 5e-5 && b < 5e-5 : metricClose(name, a, b);
  }
  if (name === "anneal_step" || name === "lr") return a === b;
  if (name.includes("error")) return Math.abs(a - b) <= 1e-6;
  if (name === "activation_flips") {
    const shape = pqShape(spec.params), perReplica = spec.params.data === "per-replica";
    const data = generateRunData(shape, spec.params.seed as number, perReplica ? 2 : 1);
    return Math.abs(a - b) * patternPairs(data, shape, perReplica ? r : 0) <= 1.0001;
  }
  return Math.abs(a - b) <= 2e-4 * Math.max(Math.abs(a), Math.abs(b), PQ_SCALE[name] ?? 0.01);
}

/** Checkpoints between the P/Q anneals, after the divergence, before the milestone/switch-off. */
const CROSS_GPU_AT: Record<string, number> = {
  "shape-matters": 60,
  pegr: 30,
  "large-lr": 30,
  "label-noise-anneal": 50,
  "linear-label-noise": 60,
};

for (const [experiment, at] of Object.entries(CROSS_GPU_AT)) {
  for (const [from, to] of [["wasm", "webgpu"], ["webgpu", "wasm"]] as const) {
    Deno.test(`a ${from} ${experiment} checkpoint opened on ${to} continues within the parity tolerances`, async () => {
      await getGpu();
      const spec = { ...WEBGPU_SPECS[experiment], backend: from };
      const first = await openSession(spec);
      await first.advance(at);
      const state = roundTrip((await first.exportState!())!);
      assert.ok(!state.replay);
      const want = await collect(first, [spec.steps]);
      await first.dispose();
      const other = await openSession({ ...spec, backend: to }, state);
      assert.equal(other.backend, to);
      const got = await collect(other, [spec.steps]);
      await other.dispose();
      // Without the details (they quote float32 losses) and the notes of the values at an
      // anneal, which the WebGPU session does not report.
      const kinds = (r: AdvanceResult) =>
        r.events.filter((e) => !(e.type === "note" && / at the anneal: /.test(e.detail)))
          .map((e) => JSON.stringify({ ...e, detail: undefined }));
      assert.deepEqual(kinds(got), kinds(want), "events");
      assert.deepEqual(got.snapshots.map((s) => s.step), want.snapshots.map((s) => s.step));
      want.snapshots.forEach((ws, i) => {
        for (const [name, values] of Object.entries(ws.metrics)) {
          // The WebGPU P/Q session keeps no values at the anneal and does not track W's
          // noise part (docs/checkpoints.md, docs/experiments/large-lr.md).
          if (/_at_(anneal|stop)$|^w_signal_|^w_noise_/.test(name)) continue;
          values.forEach((w, r) => {
            const g = got.snapshots[i].metrics[name][r];
            assert.ok(
              withinParity(spec, name, w, g, r),
              `step ${ws.step}, ${name}[${r}]: ${from} ${w}, ${to} ${g}`,
            );
          });
        }
      });
      assert.deepEqual(got.frames.map((f) => f.step), want.frames.map((f) => f.step));
      got.frames.forEach((f, i) =>
        f.values.forEach((v, j) =>
          assert.ok(
            v === want.frames[i].values[j] || relClose(want.frames[i].values[j], v, 1e-4, 2e-6),
            `frame ${f.name} at ${f.step}, entry ${j}: ${want.frames[i].values[j]} vs ${v}`,
          )
        )
      );
    });
  }
}

Deno.test("a checkpoint of another experiment or beyond the run is refused", async () => {
  const spec = { ...CHECKPOINT_SPECS.pegr, backend: "wasm" as const };
  const s = await openSession(spec);
  await s.advance(20);
  const state = (await s.exportState!())!;
  await s.dispose();
  await assert.rejects(
    openSession({ ...CHECKPOINT_SPECS["shape-matters"], backend: "wasm" }, state),
    /checkpoint: experiment pegr does not match the run's shape-matters/,
  );
  await assert.rejects(
    openSession({ ...spec, steps: 10 }, state),
    /checkpoint: step 20 is outside 0\.\.10/,
  );
});
