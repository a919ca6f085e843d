/**
 * The PEGR reference's gradients against central finite differences of the objectives, in
 * float64 on a small problem (d = 24, n = 5, m = 3) with a large initialisation so that every
 * term (ReLU² activity, ℓ'' and ζ) is O(1). The penalties the differences are taken of are
 * computed here from their definitions (explicit per-example gradient vectors, full Frobenius
 * norms, no use of μ ⊥ ξ), independently of the closed forms under test.
 *
 * Central differences with h = 1e-5 have truncation error O(h²·f''') ≈ 1e-10 and rounding
 * error O(1e-16·f/h) ≈ 1e-11 relative to O(1) gradients; the piecewise-quadratic ReLU² makes
 * them exact up to those errors only away from the kinks, so each test first checks that no
 * inner product lies within 1e-3 of 0. Tolerance 1e-8 is therefore "well below 1e-6" with a
 * margin of two orders of magnitude, and the paper's misprinted factor fails it by far.
 */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import {
  pegrDirection,
  type PegrPrepared,
  type PegrReplica,
  preparePegr,
  replicaView,
} from "../server/experiments/pegr.ts";
import {
  expand,
  filterSign,
  forward,
  hessianVectorProduct,
  logistic,
  logisticD1,
  lossGradient,
  pegrPenalty,
  pegrPenaltyGradient,
  type PegrProblem,
  relu,
} from "../server/experiments/pegr_model.ts";

const H = 1e-5;
const TOL = 1e-8;

function setup(algo: string, extra: Record<string, unknown> = {}) {
  const spec = validateRunSpec({
    experiment: "pegr",
    replicas: 1,
    steps: 10,
    backend: "reference",
    params: {
      algo,
      d: 24,
      n: 5,
      m: 3,
      mu_norm: 1.5,
      sigma_p: 0.4,
      sigma0: 0.35,
      lambda: 0.7,
      pegr_off: 5,
      n_test: 4,
      seed: 11,
      ...extra,
    },
  });
  const prep = preparePegr(spec);
  const rep = replicaView(prep, 0);
  return { prep, rep, W: Float64Array.from(rep.W0) };
}

/** ℓ_i's gradient straight from the definition of f: a full [2m × d] vector. */
function exampleGradient(W: Float64Array, p: PegrProblem, i: number): Float64Array {
  const { d, m } = p;
  const g = new Float64Array(2 * m * d);
  let f = 0;
  const act: [number, number][] = [];
  for (let q = 0; q < 2 * m; q++) {
    let s = 0, e = 0;
    for (let k = 0; k < d; k++) {
      s += W[q * d + k] * p.y[i] * p.mu[k];
      e += W[q * d + k] * p.xi[i * d + k];
    }
    act.push([relu(s), relu(e)]);
    f += filterSign(q, m) * (relu(s) ** 2 + relu(e) ** 2) / m;
  }
  const l1 = logisticD1(p.y[i] * f);
  for (let q = 0; q < 2 * m; q++) {
    const c = l1 * 2 * filterSign(q, m) * p.y[i] / m;
    for (let k = 0; k < d; k++) {
      g[q * d + k] = c * (act[q][0] * p.y[i] * p.mu[k] + act[q][1] * p.xi[i * d + k]);
    }
  }
  return g;
}

function lossOf(W: Float64Array, p: PegrProblem): number {
  const fw = forward(W, p);
  let s = 0;
  for (const u of fw.margin) s += logistic(u);
  return s / p.n;
}

const normSq = (v: Float64Array) => v.reduce((s, x) => s + x * x, 0);

/** (1/2n) Σ_i ‖∇ℓ_i‖_F², from explicit vectors. */
function pegrPenaltyExplicit(W: Float64Array, p: PegrProblem): number {
  let s = 0;
  for (let i = 0; i < p.n; i++) s += normSq(exampleGradient(W, p, i));
  return s / (2 * p.n);
}

/** ∇L_S as the mean of explicit per-example gradients. */
function fullGradientExplicit(W: Float64Array, p: PegrProblem): Float64Array {
  const g = new Float64Array(W.length);
  for (let i = 0; i < p.n; i++) {
    const gi = exampleGradient(W, p, i);
    for (let k = 0; k < g.length; k++) g[k] += gi[k] / p.n;
  }
  return g;
}

/** Central-difference gradient of a scalar function of W, coordinate by coordinate. */
function fdGradient(fn: (W: Float64Array) => number, W: Float64Array): Float64Array {
  const g = new Float64Array(W.length);
  const Wp = Float64Array.from(W);
  for (let k = 0; k < W.length; k++) {
    Wp[k] = W[k] + H;
    const up = fn(Wp);
    Wp[k] = W[k] - H;
    const down = fn(Wp);
    Wp[k] = W[k];
    g[k] = (up - down) / (2 * H);
  }
  return g;
}

function relErr(a: Float64Array, b: Float64Array): number {
  let num = 0, den = 0;
  for (let k = 0; k < a.length; k++) {
    num += (a[k] - b[k]) ** 2;
    den += b[k] ** 2;
  }
  return Math.sqrt(num / den);
}

function assertAwayFromKinks(W: Float64Array, p: PegrProblem) {
  const fw = forward(W, p);
  const smallest = Math.min(...[...fw.signalIp, ...fw.noiseIp].map(Math.abs));
  assert(smallest > 1e-3, `an inner product is ${smallest}: too close to the ReLU kink for FD`);
  // Every term must matter: some active units, and margins where ℓ'' is not negligible.
  assert(fw.noiseIp.some((x) => x > 0.1) && fw.signalIp.some((x) => x > 0.1));
  assert(fw.lossD2.some((x) => x > 0.05), "ℓ'' negligible: the ζℓ'' term would go untested");
}

Deno.test("pegr: ∇L_S and per-example gradients match finite differences", () => {
  const { rep, W } = setup("gd");
  const p = rep.problem;
  assertAwayFromKinks(W, p);
  const closed = expand(lossGradient(forward(W, p), p), p);
  const fd = fdGradient((V) => lossOf(V, p), W);
  assert(relErr(closed, fd) < TOL, `∇L_S relative error ${relErr(closed, fd)}`);
  assert(relErr(fullGradientExplicit(W, p), fd) < TOL);
  const i = 2;
  const fdi = fdGradient((V) => logistic(forward(V, p).margin[i]), W);
  assert(relErr(exampleGradient(W, p, i), fdi) < TOL);
});

Deno.test("pegr: closed-form PEGR penalty and its gradient (1/m² factor) match FD", () => {
  const { rep, W } = setup("pegr");
  const p = rep.problem;
  assertAwayFromKinks(W, p);
  const fw = forward(W, p);
  assert(Math.abs(pegrPenalty(fw, p) - pegrPenaltyExplicit(W, p)) < 1e-12);
  const fd = fdGradient((V) => pegrPenaltyExplicit(V, p), W);
  const closed = expand(pegrPenaltyGradient(fw, p), p);
  const err = relErr(closed, fd);
  if (Deno.env.get("PEGR_VERBOSE")) console.log("pegr FD rel err", err);
  assert(err < TOL, `PEGR penalty gradient relative error ${err}`);
  // The paper's Lemma 5.1 factor (1 + 4λζℓ''/m, i.e. 1/m² where 1/m³ is right) is rejected.
  const printed = expand(pegrPenaltyGradient(fw, p, true), p);
  const printedErr = relErr(printed, fd);
  if (Deno.env.get("PEGR_VERBOSE")) console.log("printed-factor rel err", printedErr);
  assert(printedErr > 1e3 * TOL, `printed factor should fail FD, error ${printedErr}`);
});

Deno.test("pegr: the full PEGR update direction is the gradient of L_S + λ·penalty", () => {
  const { prep, rep, W } = setup("pegr");
  const p = rep.problem;
  const lambda = rep.lambda;
  assert.equal(lambda, 0.7);
  const objective = (V: Float64Array) => lossOf(V, p) + lambda * pegrPenaltyExplicit(V, p);
  const fd = fdGradient(objective, W);
  const dirOn = expand(pegrDirection(prep, rep, W, 0), p);
  assert(relErr(dirOn, fd) < TOL, `PEGR direction error ${relErr(dirOn, fd)}`);
  // After the switch-off (t ≥ pegr_off) the direction is ∇L_S alone.
  const dirOff = expand(pegrDirection(prep, rep, W, 5), p);
  assert(relErr(dirOff, fdGradient((V) => lossOf(V, p), W)) < TOL);
});

Deno.test("pegr: the FGR Hessian-vector product matches FD of the gradient", () => {
  const { rep, W } = setup("fgr");
  const p = rep.problem;
  assertAwayFromKinks(W, p);
  const fw = forward(W, p);
  // A generic direction v (not in span{μ, ξ_i}), so the D_i term's projections are tested.
  const v = W.map((_, k) => Math.sin(1.7 * k + 0.3));
  const hv = expand(hessianVectorProduct(fw, p, v), p);
  const Wp = W.map((w, k) => w + H * v[k]), Wm = W.map((w, k) => w - H * v[k]);
  const gp = expand(lossGradient(forward(Wp, p), p), p);
  const gm = expand(lossGradient(forward(Wm, p), p), p);
  const fd = gp.map((g, k) => (g - gm[k]) / (2 * H));
  if (Deno.env.get("PEGR_VERBOSE")) console.log("HVP rel err", relErr(hv, fd));
  assert(relErr(hv, fd) < TOL, `HVP relative error ${relErr(hv, fd)}`);
});

function fgrObjectiveCheck(prep: PegrPrepared, rep: PegrReplica, W: Float64Array, c: number) {
  const p = rep.problem;
  const lambda = rep.lambda;
  const objective = (V: Float64Array) =>
    lossOf(V, p) + c * lambda * normSq(fullGradientExplicit(V, p));
  const fd = fdGradient(objective, W);
  const dir = expand(pegrDirection(prep, rep, W, 0), p);
  const err = relErr(dir, fd);
  if (Deno.env.get("PEGR_VERBOSE")) console.log("FGR direction rel err", err);
  assert(err < TOL, `FGR direction relative error ${err}`);
}

Deno.test("pegr: the FGR direction is the gradient of L_S + λ‖∇L_S‖² (§4.1)", () => {
  const { prep, rep, W } = setup("fgr");
  assertAwayFromKinks(W, rep.problem);
  fgrObjectiveCheck(prep, rep, W, 1);
});

Deno.test("pegr: with fgr_convention=section5 it is the gradient of L_S + (λ/2)‖∇L_S‖²", () => {
  const { prep, rep, W } = setup("fgr", { fgr_convention: "section5" });
  fgrObjectiveCheck(prep, rep, W, 0.5);
});

Deno.test("pegr: the regulariser's gradient matters at these settings (tests can fail)", () => {
  // Guard against a vacuous pass: the PEGR and FGR terms change the direction by far more
  // than the tolerance, so dropping either would fail the tests above.
  for (const algo of ["pegr", "fgr"]) {
    const { prep, rep, W } = setup(algo);
    const p = rep.problem;
    const withReg = expand(pegrDirection(prep, rep, W, 0), p);
    const plain = expand(lossGradient(forward(W, p), p), p);
    assert(relErr(plain, withReg) > 1e-3, `${algo}: regulariser too weak to test`);
  }
});
