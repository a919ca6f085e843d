/**
 * The wasm Shape Matters session against the float64 reference session (exp.reference):
 * every algorithm, every metric at every snapshot step, the v⊙v frame, call splitting, and
 * divergence. The kernel's state is float32 and the reference's float64, with identical
 * data (float32 in both) and identical Philox draws, so the only differences are float32
 * rounding; the tolerances below say how large that is.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { AdvanceResult, KernelSession, RunSpec } from "../server/experiments/types.ts";
import { testEachWasmBuild, wasmBackend } from "./wasm_builds.ts";
import { collect } from "./parity_helpers.ts";

await ensureWasm();

const experiment = getExperiment("shape-matters");

/**
 * Relative tolerance for train_loss, test_error, v_norm and the frame. Each float32 step
 * rounds v, the residuals (100-term dot products) and the gradient at ~6e-8 relative; over
 * 300 steps of these well-conditioned dynamics the measured worst relative difference is
 * ~1e-6 for the metrics and ~6e-6 for entries of v⊙v. 1e-4 leaves a margin of 15–100×, yet
 * a learning rate applied one step off at the milestone (tested below), a wrong draw or a
 * missing noise term moves the metrics by more.
 * ABS_TOL is for entries of v⊙v near 0 (under Langevin noise some v_k wander through 0):
 * there float32 leaves an absolute error of 2|v_k|·δv_k with δv_k ≈ 3e-7 (measured 2e-9 on
 * v_k² = 1.6e-5); the metrics here are ≥ 0.02, so ABS_TOL barely matters for them.
 */
const REL_TOL = 1e-4;
const ABS_TOL = 1e-7;

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= REL_TOL * Math.max(Math.abs(a), Math.abs(b)) + ABS_TOL;
}

function spec(params: Record<string, unknown>, extra: Record<string, unknown> = {}): RunSpec {
  return validateRunSpec({
    experiment: "shape-matters",
    replicas: 3,
    steps: 300,
    every: 50,
    backend: "wasm",
    params: { d: 100, n: 40, lr: [0.01, 0.005, 0.015], lr_schedule: [[120, 0.5]], ...params },
    ...extra,
  });
}

function referenceSession(s: RunSpec): KernelSession {
  return experiment.reference(experiment.prepare(s), s);
}

/**
 * Metric-by-metric comparison at every snapshot. support_size must match exactly: it only
 * differs if some v_k² lies within ~1e-6 relative of the 0.01 threshold, which does not
 * happen in these fixed-seed runs. `skip(replica, step)` excludes diverged replicas.
 */
function assertSnapshotsMatch(
  want: AdvanceResult,
  got: AdvanceResult,
  skip: (replica: number, step: number) => boolean = () => false,
): number {
  assert.deepEqual(got.snapshots.map((s) => s.step), want.snapshots.map((s) => s.step));
  let compared = 0;
  want.snapshots.forEach((ws, index) => {
    const gs = got.snapshots[index];
    assert.deepEqual(Object.keys(gs.metrics).sort(), Object.keys(ws.metrics).sort());
    for (const [name, values] of Object.entries(ws.metrics)) {
      values.forEach((w, replica) => {
        if (skip(replica, ws.step)) return;
        const g = gs.metrics[name][replica];
        assert.ok(Number.isFinite(w), `reference ${name} not finite at ${ws.step}`);
        const ok = name === "support_size" ? g === w : close(g, w);
        assert.ok(ok, `${name}[${replica}] at step ${ws.step}: wasm ${g} vs reference ${w}`);
        compared++;
      });
    }
  });
  return compared;
}

function assertFramesMatch(want: AdvanceResult, got: AdvanceResult, rows: number[]): void {
  const wf = want.frames.at(-1)!, gf = got.frames.at(-1)!;
  assert.equal(gf.name, "v_sq");
  assert.equal(gf.step, wf.step);
  assert.equal(gf.width, wf.width);
  assert.equal(gf.values.length, wf.values.length);
  for (const r of rows) {
    for (let k = 0; k < gf.width; k++) {
      const i = r * gf.width + k;
      assert.ok(close(gf.values[i], wf.values[i]), `v_sq[${r}][${k}]: ${gf.values[i]}`);
    }
  }
}

const CASES: Array<[string, Record<string, unknown>]> = [
  ["gd", { algo: "gd" }],
  ["label-noise, gaussian s", { algo: "label-noise", noise: "gaussian", delta: [1, 0.5, 2] }],
  ["label-noise, rademacher s", { algo: "label-noise", noise: "rademacher" }],
  // Mini-batch noise with δ = 1 is unstable at lr 0.015 (it diverges), hence smaller lrs.
  ["minibatch-noise, per-replica data", {
    algo: "minibatch-noise",
    data: "per-replica",
    lr: [0.01, 0.005, 0.007],
  }],
  ["gaussian", { algo: "gaussian", sigma: [0.01, 0.1, 0.3] }],
  ["langevin", { algo: "langevin", lambda: [100, 1000, 30] }],
  // d and n not multiples of 4: padded columns and the remainder rows of the SIMD loops.
  ["label-noise, d=37 n=13", { algo: "label-noise", d: 37, n: 13, r: 3 }],
];

for (const [label, params] of CASES) {
  testEachWasmBuild(`wasm matches the reference: ${label}`, async () => {
    const s = spec(params);
    const want = await collect(referenceSession(s), [300]);
    // Uneven calls: one ends inside a snapshot interval, one spans the milestone at 120.
    const session = await wasmBackend.open(s);
    assert.equal(session.backend, "wasm");
    const got = await collect(session, [70, 230, 300]);
    assert.equal(session.step, 300);
    assert.deepEqual(want.events, [], "the parity runs are meant not to diverge");
    assert.deepEqual(got.events, []);
    const compared = assertSnapshotsMatch(want, got);
    assert.equal(compared, 7 * 4 * 3); // snapshots 0, 50, …, 300 × 4 metrics × 3 replicas
    assert.deepEqual(got.frames.map((f) => f.step), [70, 230, 300]);
    assertFramesMatch(want, got, [0, 1, 2]);
    await session.dispose();
  });
}

testEachWasmBuild(
  "the lr milestone is applied at its step (a shifted milestone is detected)",
  async () => {
    // Guards the tolerance: moving the milestone by one step must exceed it somewhere.
    const s = spec({ algo: "label-noise" });
    const shifted = spec({ algo: "label-noise", lr_schedule: [[121, 0.5]] });
    const want = await collect(referenceSession(shifted), [300]);
    const got = await collect(await wasmBackend.open(s), [300]);
    assert.throws(() => assertSnapshotsMatch(want, got));
  },
);

testEachWasmBuild("wasm results do not depend on how advance() calls are split", async () => {
  const s = spec({ algo: "langevin" }, { every: 7, steps: 250 });
  const once = await collect(await wasmBackend.open(s), [250]);
  const steps = Array.from({ length: 50 }, (_, i) => 5 * (i + 1));
  const split = await collect(await wasmBackend.open(s), steps);
  assert.deepEqual(split.snapshots.map((x) => x.metrics), once.snapshots.map((x) => x.metrics));
  assert.deepEqual(split.frames.at(-1)!.values, once.frames.at(-1)!.values);
  // The final step (250) is a snapshot although 250 is not a multiple of every = 7.
  assert.equal(once.snapshots.at(-1)!.step, 250);
  assert.equal(once.snapshots.length, 1 + Math.floor(250 / 7) + 1);
});

testEachWasmBuild(
  "a replica with a huge lr diverges alone; its metrics read NaN after",
  async () => {
    const s = spec({ algo: "label-noise", lr: [0.01, 10, 0.005] }, { steps: 40, every: 2 });
    const want = await collect(referenceSession(s), [40]);
    const session = await wasmBackend.open(s);
    const calls: AdvanceResult[] = [];
    for (let target = 5; target <= 40; target += 5) calls.push(await session.advance(target));
    const got: AdvanceResult = {
      snapshots: calls.flatMap((c) => c.snapshots),
      events: calls.flatMap((c) => c.events),
      frames: calls.flatMap((c) => c.frames),
    };

    assert.equal(want.events.length, 1);
    assert.equal(got.events.length, 1);
    const [we, ge] = [want.events[0], got.events[0]];
    assert.ok(we.type === "replica_diverged" && ge.type === "replica_diverged");
    assert.equal(ge.replica, 1);
    assert.equal(we.replica, 1);
    // Divergence means "state not finite". The kernel's float32 state overflows at 3.4e38
    // (v⊙v already at |v| ≈ 1.8e19), the reference's float64 at 1.8e308; in the blow-up
    // log|v| roughly triples per step (v ← v − lr·v⊙G with G ∝ v²), so float64 overflows
    // 1–2 steps after float32 (measured: 2 steps for every algorithm and lr ≥ 0.05 tried).
    // Hence the event step agrees up to that lag, never later than the reference's.
    const lag = we.step - ge.step;
    assert.ok(lag >= 0 && lag <= 3, `wasm diverged at ${ge.step}, reference at ${we.step}`);
    // Reported by the call that crossed the step, once.
    const callIndex = calls.findIndex((c) => c.events.length > 0);
    assert.ok(ge.step > 5 * callIndex && ge.step <= 5 * (callIndex + 1));

    // The other replicas are untouched: they match the reference at every snapshot.
    const compared = assertSnapshotsMatch(want, got, (replica) => replica === 1);
    assert.equal(compared, 21 * 4 * 2);
    // Replica 1: finite before the event, NaN from the event's step on.
    for (const snap of got.snapshots) {
      for (const [name, values] of Object.entries(snap.metrics)) {
        if (snap.step < ge.step) {
          assert.ok(Number.isFinite(values[1]), `${name} at ${snap.step} should be finite`);
          if (snap.step < ge.step - 2) {
            assert.ok(close(values[1], want.snapshots[snap.step / 2].metrics[name][1]));
          }
        } else assert.ok(Number.isNaN(values[1]), `${name} at ${snap.step} should be NaN`);
      }
    }
    assertFramesMatch(want, got, [0, 2]);
  },
);

testEachWasmBuild(
  "wasm backend: probe, supports and a clear error for unknown experiments",
  async () => {
    const probe = await wasmBackend.probe();
    assert.equal(probe.available, true);
    assert.equal(probe.fallback, false);
    assert.match(probe.adapter, /wasm-simd128/);
    assert.equal(wasmBackend.supports("shape-matters"), true);
    assert.equal(wasmBackend.supports("no-such-experiment"), false);
    await assert.rejects(
      wasmBackend.open({ ...spec({}), experiment: "no-such-experiment" }),
      /no kernel for no-such-experiment/,
    );
  },
);

testEachWasmBuild(
  "wasm session: too large for 32-bit memory is refused; disposed rejects",
  async () => {
    // 1000 per-replica data sets of 4096 × 100 floats are 1.6 GB: refused before preparing.
    const huge = spec({ data: "per-replica", n: 4096, lr: 0.01 }, { replicas: 1000 });
    await assert.rejects(wasmBackend.open(huge), /GiB of wasm memory/);
    const session = await wasmBackend.open(spec({}));
    await session.advance(10);
    await session.dispose();
    await assert.rejects(session.advance(20), /disposed/);
  },
);
