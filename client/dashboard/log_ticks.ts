/**
 * Which values a log axis labels: powers of ten when the axis spans many decades (every
 * k-th, to keep about `maxCount`), 1-2-5 over a few, and every mantissa 1…9 over less than
 * a decade, whichever is the sparsest set that still gives at least `minCount` labels (an
 * axis over 0.5–1 shows 0.5, 0.6, …, 1 rather than two labels). Pure functions.
 */

const MANTISSAS = [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]];

/** Tick values in [min, max] (both > 0), ascending. */
export function logTicks(min: number, max: number, minCount = 3, maxCount = 8): number[] {
  if (!(min > 0 && max >= min && Number.isFinite(max))) return [];
  const e0 = Math.floor(Math.log10(min) + 1e-9), e1 = Math.ceil(Math.log10(max) - 1e-9);
  const inRange = (v: number) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9);
  let best: number[] = [];
  for (const set of MANTISSAS) {
    const decades = e1 - e0;
    const stride = set.length === 1 ? Math.max(1, Math.ceil(decades / maxCount)) : 1;
    const out: number[] = [];
    for (let e = e0; e <= e1; e++) {
      if (set.length === 1 && e % stride !== 0) continue;
      for (const m of set) {
        const v = Number((m * 10 ** e).toPrecision(12));
        if (inRange(v)) out.push(v);
      }
    }
    best = out;
    if (out.length >= minCount) break;
  }
  return best;
}

/** The same choice as a filter over uPlot's splits: a split not in the set loses its label. */
export function filterLogSplits(splits: number[], min: number, max: number): (number | null)[] {
  const keep = logTicks(min, max);
  return splits.map((v) => keep.some((k) => Math.abs(k - v) <= 1e-9 * Math.abs(k)) ? v : null);
}
