/**
 * The float64 mathematics of the PEGR experiment (Meng, Cao, Zou; notes
 * ../shared/papers/seed-004-pegr.md §3–4): the two-patch CNN with ReLU² filters, its logistic
 * loss, the exact gradient of the per-example gradient regulariser (PEGR), the exact
 * Hessian-vector product behind full-batch gradient regularisation (FGR), and the
 * signal–noise coefficients of Definition 5.2 recovered from the weights.
 *
 * Layout: W is row-major [2m × d]; row q holds filter w_{j,r} with j = +1 for q < m
 * (r = q) and j = −1 for q ≥ m (r = q − m). Every gradient of this model lies, filter by
 * filter, in span{μ, ξ_1, …, ξ_n}, so update directions are carried as coefficients
 * (`Direction`): direction_q = mu[q]·μ + Σ_i xi[q·n + i]·ξ_i. That is also exactly the form of
 * the paper's coefficient recursion (Lemma 5.3).
 *
 * The closed forms use <μ, ξ_i> = 0, which holds exactly here (the data generator zeroes the
 * μ coordinate of every noise patch).
 */

/** One replica's training problem in float64: signal μ, noise patches ξ_i, labels y_i. */
export interface PegrProblem {
  d: number;
  n: number;
  m: number;
  /** [d] the signal vector μ. */
  mu: Float64Array;
  muNormSq: number;
  /** Row-major [n × d]: ξ_i. */
  xi: Float64Array;
  /** [n] ‖ξ_i‖². */
  xiNormSq: Float64Array;
  /** [n × n] Gram matrix <ξ_i, ξ_k>. */
  xiGram: Float64Array;
  /** [n] labels ±1. */
  y: Float64Array;
}

/** Coefficients of a direction in span{μ, ξ_i}, per filter. */
export interface Direction {
  /** [2m] coefficient of μ in filter q. */
  mu: Float64Array;
  /** [2m × n] coefficient of ξ_i in filter q. */
  xi: Float64Array;
}

/** The forward pass on the training set, with the loss derivatives every formula needs. */
export interface Forward {
  /** [2m × n] <w_q, y_i μ>. */
  signalIp: Float64Array;
  /** [2m × n] <w_q, ξ_i>. */
  noiseIp: Float64Array;
  /** [n] margins y_i f(W, x_i). */
  margin: Float64Array;
  /** [n] ℓ'(y_i f_i) = −1/(1 + e^{y_i f_i}). */
  lossD1: Float64Array;
  /** [n] ℓ''(y_i f_i) = e^{y f}/(1 + e^{y f})². */
  lossD2: Float64Array;
  /** [n] ζ_i = Σ_q [ReLU²(<w_q, y_i μ>)‖μ‖² + ReLU²(<w_q, ξ_i>)‖ξ_i‖²]. */
  zeta: Float64Array;
}

export const filterSign = (q: number, m: number): number => (q < m ? 1 : -1);
export const relu = (z: number): number => (z > 0 ? z : 0);

export function dot(
  a: ArrayLike<number>,
  aOff: number,
  b: ArrayLike<number>,
  bOff: number,
  d: number,
) {
  let s = 0;
  for (let k = 0; k < d; k++) s += a[aOff + k] * b[bOff + k];
  return s;
}

/** Builds a problem from float64 μ, ξ, y (precomputes norms and the Gram matrix). */
export function makeProblem(
  mu: Float64Array,
  xi: Float64Array,
  y: Float64Array,
  m: number,
): PegrProblem {
  const d = mu.length, n = y.length;
  const xiNormSq = new Float64Array(n);
  const xiGram = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k <= i; k++) {
      const g = dot(xi, i * d, xi, k * d, d);
      xiGram[i * n + k] = xiGram[k * n + i] = g;
    }
    xiNormSq[i] = xiGram[i * n + i];
  }
  return { d, n, m, mu, muNormSq: dot(mu, 0, mu, 0, d), xi, xiNormSq, xiGram, y };
}

/** ℓ(z) = log(1 + e^{−z}), computed without overflow. */
export function logistic(z: number): number {
  return z > 0 ? Math.log1p(Math.exp(-z)) : -z + Math.log1p(Math.exp(z));
}

/** ℓ'(z) = −1/(1 + e^z). */
export function logisticD1(z: number): number {
  return z > 0 ? -Math.exp(-z) / (1 + Math.exp(-z)) : -1 / (1 + Math.exp(z));
}

/** ℓ''(z) = e^z/(1 + e^z)² = σ(z)σ(−z). */
export function logisticD2(z: number): number {
  const e = Math.exp(-Math.abs(z));
  return e / ((1 + e) * (1 + e));
}

/** F_j and the margins: y_i f_i = y_i Σ_j j·(1/m) Σ_r [ReLU²(<w, y_iμ>) + ReLU²(<w, ξ_i>)]. */
export function forward(W: Float64Array, p: PegrProblem): Forward {
  const { d, n, m } = p;
  const rows = 2 * m;
  const signalIp = new Float64Array(rows * n);
  const noiseIp = new Float64Array(rows * n);
  const f = new Float64Array(n);
  const zeta = new Float64Array(n);
  for (let q = 0; q < rows; q++) {
    const wmu = dot(W, q * d, p.mu, 0, d);
    const j = filterSign(q, m);
    for (let i = 0; i < n; i++) {
      const s = p.y[i] * wmu;
      const e = dot(W, q * d, p.xi, i * d, d);
      signalIp[q * n + i] = s;
      noiseIp[q * n + i] = e;
      const a = relu(s), b = relu(e);
      f[i] += j * (a * a + b * b) / m;
      zeta[i] += a * a * p.muNormSq + b * b * p.xiNormSq[i];
    }
  }
  const margin = new Float64Array(n), lossD1 = new Float64Array(n), lossD2 = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    margin[i] = p.y[i] * f[i];
    lossD1[i] = logisticD1(margin[i]);
    lossD2[i] = logisticD2(margin[i]);
  }
  return { signalIp, noiseIp, margin, lossD1, lossD2, zeta };
}

export function zeroDirection(p: PegrProblem): Direction {
  return { mu: new Float64Array(2 * p.m), xi: new Float64Array(2 * p.m * p.n) };
}

/** target += scale · source, coefficient-wise. */
export function addScaled(target: Direction, source: Direction, scale: number): Direction {
  for (let k = 0; k < target.mu.length; k++) target.mu[k] += scale * source.mu[k];
  for (let k = 0; k < target.xi.length; k++) target.xi[k] += scale * source.xi[k];
  return target;
}

/** Direction as a full [2m × d] vector: direction_q = mu[q]·μ + Σ_i xi[q,i]·ξ_i. */
export function expand(dir: Direction, p: PegrProblem): Float64Array {
  const { d, n, m } = p;
  const out = new Float64Array(2 * m * d);
  for (let q = 0; q < 2 * m; q++) {
    const o = q * d;
    const cm = dir.mu[q];
    for (let k = 0; k < d; k++) out[o + k] = cm * p.mu[k];
    for (let i = 0; i < n; i++) {
      const c = dir.xi[q * n + i];
      if (c === 0) continue;
      for (let k = 0; k < d; k++) out[o + k] += c * p.xi[i * d + k];
    }
  }
  return out;
}

/** L_S(W) = (1/n) Σ_i ℓ(y_i f(W, x_i)). */
export function trainLoss(fw: Forward): number {
  let s = 0;
  for (const u of fw.margin) s += logistic(u);
  return s / fw.margin.length;
}

/**
 * ∇_{w_{j,r}} L_S = (1/n) Σ_i ℓ'_i · (2 j y_i/m) · (ReLU(<w, y_iμ>) y_iμ + ReLU(<w, ξ_i>) ξ_i)
 * (Lemma A.1 with λ = 0).
 */
export function lossGradient(fw: Forward, p: PegrProblem): Direction {
  const { n, m } = p;
  const dir = zeroDirection(p);
  for (let q = 0; q < 2 * m; q++) {
    const j = filterSign(q, m);
    for (let i = 0; i < n; i++) {
      const c = fw.lossD1[i] * 2 * j * p.y[i] / (n * m);
      dir.mu[q] += c * relu(fw.signalIp[q * n + i]) * p.y[i];
      dir.xi[q * n + i] = c * relu(fw.noiseIp[q * n + i]);
    }
  }
  return dir;
}

/**
 * ‖∇_W ℓ_i‖_F² = (4 ℓ'_i²/m²) ζ_i (notes §4b; the cross terms vanish because μ ⊥ ξ_i).
 * Returns the PEGR penalty without λ: (1/(2n)) Σ_i ‖∇_W ℓ_i‖².
 */
export function pegrPenalty(fw: Forward, p: PegrProblem): number {
  let s = 0;
  for (let i = 0; i < p.n; i++) s += 4 * fw.lossD1[i] ** 2 * fw.zeta[i] / (p.m * p.m);
  return s / (2 * p.n);
}

/**
 * Exact gradient of the PEGR penalty (1/(2n)) Σ_i ‖∇_W ℓ_i‖² (multiply by λ), notes §4b:
 *   (4/(n m²)) Σ_i ℓ'_i² (ReLU(<w, y_iμ>)‖μ‖² y_iμ + ReLU(<w, ξ_i>)‖ξ_i‖² ξ_i)
 * + (8/(n m³)) Σ_i ℓ'_i ℓ''_i ζ_i · j y_i · (ReLU(<w, y_iμ>) y_iμ + ReLU(<w, ξ_i>) ξ_i).
 * The second term carries 1/m³: the paper's Lemma 5.1/A.1 prints the equivalent of 1/m²
 * (its factor 1 + 4λζℓ''/m should read /m²). `printedFactor` reproduces the paper's misprint
 * so a test can show that finite differences reject it.
 */
export function pegrPenaltyGradient(
  fw: Forward,
  p: PegrProblem,
  printedFactor = false,
): Direction {
  const { n, m } = p;
  const dir = zeroDirection(p);
  const crossScale = printedFactor ? 8 / (n * m * m) : 8 / (n * m * m * m);
  for (let q = 0; q < 2 * m; q++) {
    const j = filterSign(q, m);
    for (let i = 0; i < n; i++) {
      const a = relu(fw.signalIp[q * n + i]), b = relu(fw.noiseIp[q * n + i]);
      const shrink = 4 * fw.lossD1[i] ** 2 / (n * m * m);
      const cross = crossScale * fw.lossD1[i] * fw.lossD2[i] * fw.zeta[i] * j * p.y[i];
      dir.mu[q] += (shrink * a * p.muNormSq + cross * a) * p.y[i];
      dir.xi[q * n + i] = shrink * b * p.xiNormSq[i] + cross * b;
    }
  }
  return dir;
}

/**
 * Hessian-vector product of L_S (notes §4c): H v = (1/n) Σ_i [ℓ''_i <g̃_i, v> g̃_i + ℓ'_i D_i v],
 * g̃_i = ∇_W(y_i f_i) with blocks (2 j y_i/m)(ReLU(<w, y_iμ>) y_iμ + ReLU(<w, ξ_i>) ξ_i),
 * (D_i v)_q = (2 j y_i/m)[1(<w, y_iμ> > 0)<μ, v_q> μ + 1(<w, ξ_i> > 0)<ξ_i, v_q> ξ_i].
 * `v` is a full [2m × d] vector; the result lies in span{μ, ξ_i} per filter.
 */
export function hessianVectorProduct(fw: Forward, p: PegrProblem, v: Float64Array): Direction {
  const { d, n, m } = p;
  const rows = 2 * m;
  const vMu = new Float64Array(rows); // <μ, v_q>
  const vXi = new Float64Array(rows * n); // <ξ_i, v_q>
  for (let q = 0; q < rows; q++) {
    vMu[q] = dot(v, q * d, p.mu, 0, d);
    for (let i = 0; i < n; i++) vXi[q * n + i] = dot(v, q * d, p.xi, i * d, d);
  }
  const gv = new Float64Array(n); // <g̃_i, v>
  for (let q = 0; q < rows; q++) {
    const j = filterSign(q, m);
    for (let i = 0; i < n; i++) {
      const a = relu(fw.signalIp[q * n + i]), b = relu(fw.noiseIp[q * n + i]);
      gv[i] += (2 * j * p.y[i] / m) * (a * p.y[i] * vMu[q] + b * vXi[q * n + i]);
    }
  }
  const dir = zeroDirection(p);
  for (let q = 0; q < rows; q++) {
    const j = filterSign(q, m);
    for (let i = 0; i < n; i++) {
      const s = fw.signalIp[q * n + i], e = fw.noiseIp[q * n + i];
      const c = 2 * j * p.y[i] / (m * n);
      const outer = fw.lossD2[i] * gv[i] * c;
      dir.mu[q] += outer * relu(s) * p.y[i] + fw.lossD1[i] * c * (s > 0 ? vMu[q] : 0);
      dir.xi[q * n + i] = outer * relu(e) + fw.lossD1[i] * c * (e > 0 ? vXi[q * n + i] : 0);
    }
  }
  return dir;
}

/** ‖Σ coefficients‖²: ‖direction‖_F² from the coefficients and the Gram matrix (μ ⊥ ξ). */
export function directionNormSq(dir: Direction, p: PegrProblem): number {
  const { n, m } = p;
  let s = 0;
  for (let q = 0; q < 2 * m; q++) {
    s += dir.mu[q] ** 2 * p.muNormSq;
    for (let i = 0; i < n; i++) {
      const ci = dir.xi[q * n + i];
      if (ci === 0) continue;
      for (let k = 0; k < n; k++) s += ci * dir.xi[q * n + k] * p.xiGram[i * n + k];
    }
  }
  return s;
}

/** W ← W − lr · direction. */
export function applyStep(W: Float64Array, dir: Direction, lr: number, p: PegrProblem): void {
  const full = expand(dir, p);
  for (let k = 0; k < W.length; k++) W[k] -= lr * full[k];
}

/**
 * Signal–noise coefficients of Definition 5.2, recovered from the weights:
 *   w_{j,r} − w⁰_{j,r} = j γ_{j,r} μ/‖μ‖² + Σ_i ρ_{j,r,i} ξ_i/‖ξ_i‖².
 * γ = j<Δw, μ> (μ ⊥ ξ_i); ρ solves the n×n system <Δw, ξ_k> = Σ_i ρ_i <ξ_i, ξ_k>/‖ξ_i‖²,
 * using the Cholesky factor of the Gram matrix (`gramCholesky`).
 */
export function recoverCoefficients(
  W: Float64Array,
  W0: Float64Array,
  p: PegrProblem,
  chol: Float64Array,
): { gamma: Float64Array; rho: Float64Array } {
  const { d, n, m } = p;
  const gamma = new Float64Array(2 * m);
  const rho = new Float64Array(2 * m * n);
  const delta = new Float64Array(d);
  const b = new Float64Array(n);
  for (let q = 0; q < 2 * m; q++) {
    for (let k = 0; k < d; k++) delta[k] = W[q * d + k] - W0[q * d + k];
    gamma[q] = filterSign(q, m) * dot(delta, 0, p.mu, 0, d);
    for (let i = 0; i < n; i++) b[i] = dot(delta, 0, p.xi, i * d, d);
    const c = choleskySolve(chol, b, n); // Δw's noise part = Σ_i c_i ξ_i
    for (let i = 0; i < n; i++) rho[q * n + i] = c[i] * p.xiNormSq[i];
  }
  return { gamma, rho };
}

/** Lower Cholesky factor of a symmetric positive-definite n×n matrix (row-major). */
export function gramCholesky(A: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k <= i; k++) {
      let s = A[i * n + k];
      for (let t = 0; t < k; t++) s -= L[i * n + t] * L[k * n + t];
      if (i === k) {
        if (!(s > 0)) throw new Error("Gram matrix of the noise patches is not positive definite");
        L[i * n + i] = Math.sqrt(s);
      } else L[i * n + k] = s / L[k * n + k];
    }
  }
  return L;
}

export function choleskySolve(L: Float64Array, b: Float64Array, n: number): Float64Array {
  const z = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let t = 0; t < i; t++) s -= L[i * n + t] * z[t];
    z[i] = s / L[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = z[i];
    for (let t = i + 1; t < n; t++) s -= L[t * n + i] * x[t];
    x[i] = s / L[i * n + i];
  }
  return x;
}
