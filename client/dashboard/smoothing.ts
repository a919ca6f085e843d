/**
 * Causal, bias-corrected exponential moving average (the debiasing Adam uses):
 *   s_t = β·s_{t-1} + (1 − β)·x_t,  shown as s_t / (1 − β^t),  s_0 = 0.
 * Each output depends only on inputs up to t, so a smoothed point never changes once drawn;
 * the division removes the pull toward s_0 = 0 that plain EMA shows at the start of a run.
 * Non-finite inputs (a diverged replica) yield NaN and leave the state untouched, so the
 * curve resumes when finite values return.
 */
export class DebiasedEma {
  private s = 0;
  private t = 0;
  private betaPowT = 1;

  constructor(readonly beta: number) {
    if (!(beta >= 0 && beta < 1)) throw new RangeError(`smoothing must be in [0, 1), got ${beta}`);
  }

  push(x: number): number {
    if (!Number.isFinite(x)) return NaN;
    this.t++;
    this.s = this.beta * this.s + (1 - this.beta) * x;
    this.betaPowT *= this.beta;
    return this.beta === 0 ? x : this.s / (1 - this.betaPowT);
  }

  get count(): number {
    return this.t;
  }
}

/** Smooths a whole column at once (used when the slider moves): same numbers as pushing. */
export function smoothColumn(
  values: ArrayLike<number>,
  beta: number,
  out: Float64Array = new Float64Array(values.length),
): Float64Array {
  const ema = new DebiasedEma(beta);
  for (let i = 0; i < values.length; i++) out[i] = ema.push(values[i]);
  return out;
}
