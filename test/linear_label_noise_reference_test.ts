/**
 * The float64 reference of `linear-label-noise` (seed-002): updates against finite
 * differences of the losses, the exact balance identity (notes §6 P1) over long runs, the
 * forced chain of §3.2.1, the data generator, the metrics on hand-built states, and the
 * session's frames and lazy-escape event.
 */
import assert from "node:assert/strict";
import { assertClose } from "./gradient_check.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { linearLabelNoise } from "../server/experiments/linear_label_noise.ts";
import {
  generateThetaStar,
  type LinearPrepared,
  noiseOn,
  plannedLinearEvents,
  prepareLinearLabelNoise,
  stepKind,
  thetaNormOf,
} from "../server/experiments/linear_label_noise_setup.ts";
import {
  endToEnd,
  gdStep,
  initialState,
  labelNoise,
  linearMetrics,
  type LinearState,
  linearStep,
  oscillationStep,
  sampleOf,
  sgdStep,
} from "../server/experiments/linear_label_noise_reference.ts";
import { lazyRadius } from "../server/experiments/linear_label_noise_session.ts";
import { moments } from "./stats.ts";

function spec(params: Record<string, unknown>, replicas = 1, steps = 1000, every = 100) {
  return validateRunSpec({ experiment: "linear-label-noise", params, replicas, steps, every });
}

const SMALL = { m: 6, d: 4, n: 9, n_test: 11, lr: 0.05, sigma: 1.5, frame_every: 0 };

function cloneState(st: LinearState): LinearState {
  return {
    W: st.W.slice(),
    a: st.a.slice(),
    S: st.S.slice(),
    c0: st.c0.slice(),
    checksum: st.checksum.slice(),
  };
}

/** Central differences of `loss` over every entry of W and a. */
function numericGradient(st: LinearState, loss: (s: LinearState) => number) {
  const h = 1e-6;
  const probe = (arr: Float64Array, k: number) => {
    const keep = arr[k];
    arr[k] = keep + h;
    const up = loss(st);
    arr[k] = keep - h;
    const down = loss(st);
    arr[k] = keep;
    return (up - down) / (2 * h);
  };
  return {
    gW: Float64Array.from(st.W, (_, k) => probe(st.W, k)),
    ga: Float64Array.from(st.a, (_, k) => probe(st.a, k)),
  };
}

/** A state moved away from initialisation so that no gradient vanishes by symmetry. */
function warmedState(prep: LinearPrepared, steps = 25): LinearState {
  const st = initialState(prep, 0);
  for (let t = 0; t < steps; t++) linearStep(prep, st, 0, t);
  return st;
}

/** (−ΔW/η, −Δa/η) of one step: the gradient the step used. */
function stepGradient(prep: LinearPrepared, before: LinearState, after: LinearState) {
  const lr = prep.lr[0];
  return {
    gW: before.W.map((v, k) => (v - after.W[k]) / lr),
    ga: before.a.map((v, k) => (v - after.a[k]) / lr),
  };
}

Deno.test("SGD step is −η∇ of ½(aᵀWx − y − ε)² at the old (W, a): simultaneous updates", () => {
  for (const dataMode of ["finite", "online"]) {
    const prep = prepareLinearLabelNoise(spec({ ...SMALL, data_mode: dataMode }));
    const t = 31;
    const st = warmedState(prep);
    const x = new Float64Array(prep.d);
    const y = sampleOf(prep, 0, t, x);
    const eps = labelNoise(prep, 0, t);
    assert.equal(Math.abs(eps), 1.5, "ε = ±σ");
    const loss = (s: LinearState) => {
      let f = 0;
      for (let i = 0; i < prep.m; i++) {
        for (let k = 0; k < prep.d; k++) f += s.a[i] * s.W[i * prep.d + k] * x[k];
      }
      return 0.5 * (f - y - eps) ** 2;
    };
    const numeric = numericGradient(st, loss);
    const after = cloneState(st);
    sgdStep(prep, after, 0, t, { x: new Float64Array(prep.d), h: new Float64Array(prep.m) });
    const used = stepGradient(prep, st, after);
    assertClose(used.gW, numeric.gW, 1e-6, `${dataMode}: ∂/∂W`);
    assertClose(used.ga, numeric.ga, 1e-6, `${dataMode}: ∂/∂a`);
  }
});

Deno.test("GD step is −η∇ of the clean loss: n-point mean, or ½‖θ − θ*‖² online", () => {
  for (const dataMode of ["finite", "online"]) {
    const prep = prepareLinearLabelNoise(spec({ ...SMALL, algo: "gd", data_mode: dataMode }));
    const st = warmedState(prep, 3);
    const loss = (s: LinearState) => {
      const theta = endToEnd(s, prep.m, prep.d);
      if (prep.online) {
        let e = 0;
        for (let k = 0; k < prep.d; k++) e += (theta[k] - prep.thetaStar[k]) ** 2;
        return 0.5 * e;
      }
      let sum = 0;
      for (let j = 0; j < prep.n; j++) {
        let r = -prep.y[j];
        for (let k = 0; k < prep.d; k++) r += theta[k] * prep.X[j * prep.d + k];
        sum += 0.5 * r * r;
      }
      return sum / prep.n;
    };
    const numeric = numericGradient(st, loss);
    const after = cloneState(st);
    gdStep(prep, after, 0);
    const used = stepGradient(prep, st, after);
    assertClose(used.gW, numeric.gW, 1e-6, `${dataMode}: ∂/∂W`);
    assertClose(used.ga, numeric.ga, 1e-6, `${dataMode}: ∂/∂a`);
    // The train_loss metric is the same loss.
    assert.ok(Math.abs(linearMetrics(prep, st, 0).train_loss - loss(st)) < 1e-12);
  }
});

Deno.test("balance identity (P1) holds to ~1e-13 in float64 over 2·10⁵ steps, every algorithm", () => {
  const cases: Record<string, unknown>[] = [
    { algo: "label-noise-sgd" },
    { algo: "label-noise-sgd", noise: "gaussian", data_mode: "online" },
    { algo: "sgd" },
    { algo: "gd" },
    { algo: "periodic", period: 700 },
    { algo: "label-noise-sgd", switch_to_gd_at: 100000 },
  ];
  for (const extra of cases) {
    const prep = prepareLinearLabelNoise(
      spec({ m: 20, d: 5, n: 50, lr: 0.01, sigma: 1, frame_every: 0, ...extra }),
    );
    const st = initialState(prep, 0);
    const scratch = { x: new Float64Array(prep.d), h: new Float64Array(prep.m) };
    const steps = extra.algo === "gd" ? 20000 : 200000;
    for (let t = 0; t < steps; t++) linearStep(prep, st, 0, t, scratch);
    const residual = linearMetrics(prep, st, 0).balance_residual;
    // The state is O(1); float64 rounding of 2·10⁵ updates random-walks to ~1e-14.
    assert.ok(residual < 1e-11, `${JSON.stringify(extra)}: residual ${residual}`);
    // The identity is not trivially satisfied: the accumulated drift Σ_t(‖Δw‖² − Δa²) is large.
    const drift = Math.max(...st.S.map(Math.abs));
    if (extra.algo !== "sgd" && extra.algo !== "gd") {
      assert.ok(drift > 1e-2, `${JSON.stringify(extra)}: drift ${drift}`);
    }
  }
});

Deno.test("oscillation: a_i alternates 0 → ±lr^¼ → 0, initial mix ¼, ¼, ½, W by GD", () => {
  const lr = 1e-4;
  const prep = prepareLinearLabelNoise(
    spec({ algo: "oscillation", m: 4000, d: 3, n: 20, lr, frame_every: 0 }),
  );
  const c = Math.fround(lr ** 0.25);
  const counts = { plus: 0, minus: 0, zero: 0 };
  for (const v of prep.A0) counts[v === c ? "plus" : v === -c ? "minus" : "zero"]++;
  assert.equal(counts.plus + counts.minus + counts.zero, 4000);
  // Binomial sd: √(4000·¼·¾) ≈ 27 and √(4000·½·½) ≈ 32; 5 sd bounds.
  assert.ok(Math.abs(counts.plus - 1000) < 140 && Math.abs(counts.minus - 1000) < 140, `${counts}`);
  assert.ok(Math.abs(counts.zero - 2000) < 160, JSON.stringify(counts));
  const st = initialState(prep, 0);
  let plusFromZero = 0, fromZero = 0;
  for (let t = 0; t < 6; t++) {
    const before = cloneState(st);
    oscillationStep(prep, st, 0, t);
    for (let i = 0; i < prep.m; i++) {
      if (before.a[i] !== 0) assert.equal(st.a[i], 0, "±c → 0");
      else {
        assert.ok(st.a[i] === c || st.a[i] === -c, "0 → ±c");
        fromZero++;
        if (st.a[i] === c) plusFromZero++;
      }
    }
    // First layer: w_i moved along −η a_i(t) g(t), so neurons with a_i(t) = 0 did not move.
    for (let i = 0; i < prep.m; i++) {
      if (before.a[i] === 0) {
        for (let k = 0; k < prep.d; k++) {
          assert.equal(st.W[i * prep.d + k], before.W[i * prep.d + k]);
        }
      }
    }
  }
  const share = plusFromZero / fromZero; // fromZero ≈ 12000: sd of the share ≈ 0.005
  assert.ok(Math.abs(share - 0.5) < 0.03, `share of +c from 0: ${share}`);
  assert.ok(Number.isNaN(linearMetrics(prep, st, 0).balance_residual));
});

Deno.test("data: ‖θ*‖ = m^(−1/4), y = θ*ᵀx, NTK initialisation variances, determinism", () => {
  const p = { m: 400, d: 25, n: 300, n_test: 200, frame_every: 0 };
  const prep = prepareLinearLabelNoise(spec(p));
  const star = Math.hypot(...prep.thetaStar);
  assert.ok(Math.abs(star - 400 ** -0.25) < 1e-6, `‖θ*‖ = ${star}`);
  assert.equal(thetaNormOf(0.3, 400), 0.3);
  assert.ok(Math.abs(Math.hypot(...generateThetaStar(7, 25, 0.3)) - 0.3) < 1e-6);
  for (let j = 0; j < prep.n; j++) {
    let y = 0;
    for (let k = 0; k < prep.d; k++) y += prep.thetaStar[k] * prep.X[j * prep.d + k];
    assert.equal(prep.y[j], Math.fround(y));
  }
  // x ~ N(0, I): 7500 entries, sd of the sample mean ≈ 0.012, of the variance ≈ 0.016.
  const mx = moments(prep.X);
  assert.ok(Math.abs(mx.mean) < 0.06 && Math.abs(mx.variance - 1) < 0.08, JSON.stringify(mx));
  const mt = moments(prep.Xtest);
  assert.ok(Math.abs(mt.mean) < 0.06 && Math.abs(mt.variance - 1) < 0.1, JSON.stringify(mt));
  assert.notDeepEqual(prep.X.subarray(0, 25), prep.Xtest.subarray(0, 25), "fresh test set");
  // W(0) entries ~ N(0, 1/d): 10⁴ entries, relative sd of the variance ≈ 0.014.
  const mw = moments(prep.W0);
  assert.ok(Math.abs(mw.variance * 25 - 1) < 0.07, `Var(w)·d = ${mw.variance * 25}`);
  const ma = moments(prep.A0); // 400 entries: relative sd ≈ 0.07
  assert.ok(Math.abs(ma.variance * 400 - 1) < 0.3, `Var(a)·m = ${ma.variance * 400}`);
  assert.deepEqual(prepareLinearLabelNoise(spec(p)).W0, prep.W0, "deterministic");
  assert.notDeepEqual(prepareLinearLabelNoise(spec({ ...p, seed: 1 })).X, prep.X);
  // The shared init is keyed by (seed, DATA_REPLICA): a new seed is a new initialisation too.
  assert.notDeepEqual(prepareLinearLabelNoise(spec({ ...p, seed: 1 })).W0, prep.W0);
});

Deno.test("replicas: shared data and init by default, per-replica on request", () => {
  const base = { m: 8, d: 3, n: 10, sigma: 0, frame_every: 0 };
  const shared = prepareLinearLabelNoise(spec(base, 2));
  assert.equal(shared.W0.length, 8 * 3);
  assert.deepEqual(shared.A0.subarray(0, 8), shared.A0.subarray(8, 16));
  // Same data, same init, same sample order and σ = 0: identical trajectories.
  const s0 = initialState(shared, 0), s1 = initialState(shared, 1);
  for (let t = 0; t < 50; t++) linearStep(shared, s0, 0, t), linearStep(shared, s1, 1, t);
  assert.deepEqual(s0.W, s1.W);
  const own = prepareLinearLabelNoise(
    spec({ ...base, data: "per-replica", init: "per-replica" }, 2),
  );
  assert.equal(own.W0.length, 2 * 8 * 3);
  assert.notDeepEqual(own.W0.subarray(0, 24), own.W0.subarray(24, 48));
  assert.notDeepEqual(own.X.subarray(0, 30), own.X.subarray(30, 60));
  assert.notDeepEqual(own.thetaStar.subarray(0, 3), own.thetaStar.subarray(3, 6));
  // Replica 1 of per-replica data is seed+1's data.
  const next = prepareLinearLabelNoise(spec({ ...base, seed: 1 }));
  assert.deepEqual(own.X.subarray(30, 60), next.X);
});

Deno.test("label noise: ±σ balanced, Gaussian option with variance σ², per replica σ", () => {
  const prep = prepareLinearLabelNoise(spec({ ...SMALL, sigma: [2, 0.5] }, 2));
  let plus = 0;
  for (let t = 0; t < 4000; t++) {
    const e = labelNoise(prep, 0, t);
    assert.ok(e === 2 || e === -2);
    if (e > 0) plus++;
    assert.equal(Math.abs(labelNoise(prep, 1, t)), 0.5);
  }
  assert.ok(Math.abs(plus - 2000) < 200, `${plus}`); // sd ≈ 32
  const gauss = prepareLinearLabelNoise(spec({ ...SMALL, sigma: 2, noise: "gaussian" }));
  const draws = Array.from({ length: 8000 }, (_, t) => labelNoise(gauss, 0, t));
  const mg = moments(draws); // sd of the variance estimate ≈ 4·√(2/8000) ≈ 0.063
  assert.ok(Math.abs(mg.mean) < 0.1 && Math.abs(mg.variance - 4) < 0.35, JSON.stringify(mg));
  const sgd = prepareLinearLabelNoise(spec({ ...SMALL, algo: "sgd", sigma: 3 }));
  assert.equal(labelNoise(sgd, 0, 5), 0, "sgd ignores sigma");
});

Deno.test("periodic noise and the switch to GD happen at the documented steps", () => {
  const periodic = prepareLinearLabelNoise(spec({ ...SMALL, algo: "periodic", period: 10 }));
  for (const [t, on] of [[0, true], [9, true], [10, false], [19, false], [20, true]] as const) {
    assert.equal(noiseOn(periodic, t), on, `step ${t}`);
    assert.equal(labelNoise(periodic, 0, t) !== 0, on, `noise at step ${t}`);
  }
  const events = plannedLinearEvents(spec({ algo: "periodic", period: 10 }, 1, 45));
  assert.deepEqual(events.map((e) => [e.step, e.type]), [
    [10, "noise_off"],
    [20, "phase_change"],
    [30, "noise_off"],
    [40, "phase_change"],
  ]);
  const long = plannedLinearEvents(spec({ algo: "periodic", period: 1 }, 1, 1e6));
  assert.equal(long.length, 201, "toggles are capped, with a note");
  const switched = spec({ ...SMALL, switch_to_gd_at: 30, algo: "periodic", period: 10 }, 1, 100);
  const prep = prepareLinearLabelNoise(switched);
  assert.equal(stepKind(prep, 29), "sgd");
  assert.equal(stepKind(prep, 30), "gd");
  assert.deepEqual(
    plannedLinearEvents(switched).map((e) => [e.step, e.type]),
    [[10, "noise_off"], [20, "phase_change"], [30, "phase_change"]],
  );
  // After the switch a step is exactly gdStep.
  const a = initialState(prep, 0), b = cloneState(a);
  linearStep(prep, a, 0, 30);
  gdStep(prep, b, 0);
  assert.deepEqual(a.W, b.W);
  assert.equal(stepKind(prepareLinearLabelNoise(spec({ ...SMALL, algo: "gd" })), 0), "gd");
});

Deno.test("metrics on hand-built states: alignments, lazy distance, θ error", () => {
  const prep = prepareLinearLabelNoise(spec({ m: 4, d: 3, n: 5, frame_every: 0 }));
  const star = Array.from(prep.thetaStar);
  const u = Math.hypot(...star);
  const st = initialState(prep, 0);
  // Neurons ±2θ*/‖θ*‖ and ±θ*/‖θ*‖ with matching (or, for neuron 3, opposite) a signs.
  const rows = [2, -2, 1, -1];
  const as = [0.5, -0.5, 0.25, 0.25];
  for (let i = 0; i < 4; i++) {
    for (let k = 0; k < 3; k++) st.W[i * 3 + k] = rows[i] * star[k] / u;
    st.a[i] = as[i];
  }
  const met = linearMetrics(prep, st, 0);
  const close = (x: number, y: number, what: string) =>
    assert.ok(Math.abs(x - y) < 1e-12, `${what}: ${x} vs ${y}`);
  close(met.align_abs_cos, 1, "mean |cos|");
  close(met.align_signed_cos, 0.5, "mean sgn(a)cos: three aligned, one anti");
  close(met.align_raw, 0, "raw mean cancels");
  close(met.w_norm_mean, 1.5, "mean ‖w‖");
  close(met.w_norm_min, 1, "min ‖w‖");
  close(met.w_norm_max, 2, "max ‖w‖");
  close(met.a_abs_mean, 0.375, "mean |a|");
  close(met.a_abs_max, 0.5, "max |a|");
  // θ = Σ a_i w_i = (1 + 1 + 0.25 − 0.25)·θ*/‖θ*‖ = 2θ*/‖θ*‖.
  close(met.theta_error, Math.abs(2 - u), "‖θ − θ*‖");
  const fresh = linearMetrics(prep, initialState(prep, 0), 0);
  assert.equal(fresh.lazy_dist_max, 0);
  assert.ok(fresh.balance_residual < 1e-15);
  close(
    fresh.train_loss,
    (() => {
      const theta = endToEnd(initialState(prep, 0), 4, 3);
      let s = 0;
      for (let j = 0; j < 5; j++) {
        let r = -prep.y[j];
        for (let k = 0; k < 3; k++) r += theta[k] * prep.X[j * 3 + k];
        s += 0.5 * r * r;
      }
      return s / 5;
    })(),
    "train loss",
  );
});

Deno.test("session: snapshots, frames every frame_every snapshots, one lazy-escape event each", async () => {
  const s = spec(
    { m: 16, d: 4, data_mode: "online", lr: 0.02, sigma: [2, 0], frame_every: 3 },
    2,
    2300,
    100,
  );
  const session = linearLabelNoise.reference(linearLabelNoise.prepare(s), s);
  const snapshots = [], frames = [], events = [];
  for (const target of [150, 700, 2300]) {
    const res = await session.advance(target);
    snapshots.push(...res.snapshots), frames.push(...res.frames), events.push(...res.events);
  }
  assert.deepEqual(
    snapshots.map((x) => x.step),
    Array.from({ length: 24 }, (_, i) => Math.min(2300, i * 100)),
  );
  assert.deepEqual(frames.map((f) => f.step), [0, 300, 600, 900, 1200, 1500, 1800, 2100, 2300]);
  const frame = frames.at(-1)!;
  assert.equal(frame.width, 48);
  // The frame's blocks are ‖w_i‖, <w_i, θ*>, a_i: their means are the scalar metrics.
  const last = snapshots.at(-1)!.metrics;
  const mean = (from: number) => frame.values.slice(from, from + 16).reduce((x, y) => x + y) / 16;
  assert.ok(Math.abs(mean(0) - last.w_norm_mean[0]) < 1e-5);
  assert.ok(Math.abs(mean(16) - last.align_raw[0]) < 1e-5);
  const escapes = events.filter((e) => e.type === "phase_change");
  assert.equal(escapes.length, 1, "the noisy replica escapes, the σ = 0 one does not");
  const at = escapes[0].step;
  const radius = lazyRadius(16);
  const before = snapshots.filter((x) => x.step < at).map((x) => x.metrics.lazy_dist_min[0]);
  assert.ok(before.every((v) => v <= radius));
  assert.ok(snapshots.find((x) => x.step === at)!.metrics.lazy_dist_min[0] > radius);
  assert.ok(snapshots.every((x) => x.metrics.lazy_dist_max[1] < radius), "σ = 0 stays lazy");
});

Deno.test("estimateBytes grows with m·d·R and shared init is counted once", () => {
  const one = linearLabelNoise.estimateBytes(spec({}, 1));
  const four = linearLabelNoise.estimateBytes(spec({}, 4));
  const own = linearLabelNoise.estimateBytes(spec({ init: "per-replica" }, 4));
  // Each replica adds its W (m×d float32); W(0) is stored once unless init is per-replica.
  assert.ok(one > 2 * 4 * 1000 * 20, `${one}`);
  assert.ok(four - one > 3 * 4 * 1000 * 20 && own - four >= 3 * 4 * 1000 * 20);
});
