/**
 * Turns column stores into what uPlot draws, with work proportional to pixels: each run's
 * rows inside the visible x window are re-bucketed to about one bucket per pixel (min of
 * mins, max of maxes, last of lasts, so a spike inside a bucket still reaches the band),
 * then the runs' x columns are joined into one aligned table. Pure functions, no DOM.
 */

export type Agg = "min" | "max" | "last";

/** One y column over a group's rows: values[offset + i·stride] for row i. */
export interface YColumn {
  values: ArrayLike<number>;
  agg: Agg;
  stride?: number;
  offset?: number;
}

/** Rows sharing one x column (one run's series of one chart). */
export interface Group {
  x: ArrayLike<number>;
  n: number;
  ys: YColumn[];
}

export interface Window {
  /** Visible x range; null means everything. */
  min: number | null;
  max: number | null;
  /** Buckets across the window (about the plot width in CSS pixels). */
  buckets: number;
  log: boolean;
}

export interface Bucketed {
  x: Float64Array;
  ys: Float64Array[];
}

/** Index of the first row with x ≥ v in a sorted column. */
function lowerBound(x: ArrayLike<number>, n: number, v: number): number {
  let lo = 0, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Rows of a group inside the window (plus one neighbour each side so lines reach the
 * edges), re-bucketed when there are more than two per bucket. Rows with x ≤ 0 are dropped
 * on a log axis.
 */
export function bucketGroup(g: Group, w: Window): Bucketed {
  let start = 0, end = g.n;
  if (w.log) start = lowerBound(g.x, g.n, Number.MIN_VALUE);
  if (w.min !== null) start = Math.max(start, lowerBound(g.x, g.n, w.min) - 1);
  if (w.max !== null) {
    let after = lowerBound(g.x, g.n, w.max);
    while (after < g.n && g.x[after] <= w.max) after++;
    end = Math.min(end, after + 1);
  }
  if (w.log && start < g.n && g.x[start] <= 0) start++;
  const count = Math.max(0, end - start);
  const B = Math.max(1, Math.floor(w.buckets));
  const read = (c: YColumn, i: number) => c.values[(c.offset ?? 0) + i * (c.stride ?? 1)];
  if (count <= 2 * B) {
    const x = new Float64Array(count);
    const ys = g.ys.map(() => new Float64Array(count));
    for (let i = 0; i < count; i++) {
      x[i] = g.x[start + i];
      for (let k = 0; k < g.ys.length; k++) ys[k][i] = read(g.ys[k], start + i);
    }
    return { x, ys };
  }
  const lo = w.min ?? g.x[start], hi = w.max ?? g.x[end - 1];
  const t = (v: number) => (w.log ? Math.log(v) : v);
  const t0 = t(lo), span = t(hi) - t0 || 1;
  const key = (v: number) => Math.floor(((t(v) - t0) / span) * B);
  const xs: number[] = [];
  const acc = g.ys.map(() => [] as number[]);
  let current = key(g.x[start]);
  const cur = new Float64Array(g.ys.length);
  const reset = () => {
    for (let k = 0; k < g.ys.length; k++) cur[k] = NaN;
  };
  reset();
  let lastX = NaN;
  for (let i = start; i <= end; i++) {
    const k = i < end ? key(g.x[i]) : NaN;
    if (i === end || k !== current) {
      xs.push(lastX);
      for (let c = 0; c < g.ys.length; c++) acc[c].push(cur[c]);
      if (i === end) break;
      current = k;
      reset();
    }
    lastX = g.x[i];
    for (let c = 0; c < g.ys.length; c++) {
      const v = read(g.ys[c], i);
      const a = g.ys[c].agg;
      if (a === "last") cur[c] = v;
      else if (Number.isFinite(v)) {
        if (Number.isNaN(cur[c])) cur[c] = v;
        else cur[c] = a === "min" ? Math.min(cur[c], v) : Math.max(cur[c], v);
      }
    }
  }
  return { x: Float64Array.from(xs), ys: acc.map((a) => Float64Array.from(a)) };
}

function longest(groups: Bucketed[]): Float64Array {
  let best = groups[0].x;
  for (const g of groups) if (g.x.length > best.length) best = g.x;
  return best;
}

function isPrefix(a: Float64Array, b: Float64Array): boolean {
  if (a.length > b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export type Cell = number | null | undefined;
/** uPlot's aligned data: x, then one column per series; null breaks a line, undefined spans. */
export type Aligned = [Float64Array, ...Cell[][]];

function sameX(a: Float64Array, b: Float64Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Joins bucketed groups on the union of their x values. A value that is not finite (or ≤ 0
 * on a log y axis) becomes null, a real gap; a row that a group has no point at becomes
 * undefined, which uPlot spans so each run's line stays continuous.
 */
export function joinGroups(groups: Bucketed[], logY: boolean): Aligned {
  const cell = (v: number): number | null => Number.isFinite(v) && (!logY || v > 0) ? v : null;
  const all = groups.filter((g) => g.x.length > 0 && g.ys.length > 0);
  let union: Float64Array;
  if (all.length === 0) union = new Float64Array(0);
  else if (all.every((g) => sameX(g.x, all[0].x))) union = all[0].x;
  else if (all.every((g) => isPrefix(g.x, longest(all)))) {
    // Runs at different progress on the same snapshot grid: the longest x is the union.
    union = longest(all);
  } else {
    let total = 0;
    for (const g of all) total += g.x.length;
    const merged = new Float64Array(total);
    let o = 0;
    for (const g of all) merged.set(g.x, (o += g.x.length) - g.x.length);
    merged.sort();
    let u = 0;
    for (let i = 0; i < merged.length; i++) {
      if (i === 0 || merged[i] !== merged[u - 1]) merged[u++] = merged[i];
    }
    union = merged.slice(0, u);
  }
  const out: Aligned = [union];
  for (const g of groups) {
    const cols = g.ys.map(() => new Array<Cell>(union.length));
    let j = 0;
    for (let i = 0; i < union.length; i++) {
      const here = j < g.x.length && g.x[j] === union[i];
      for (let c = 0; c < g.ys.length; c++) cols[c][i] = here ? cell(g.ys[c][j]) : undefined;
      if (here) j++;
    }
    out.push(...cols);
  }
  return out;
}
