/** Summaries of interleaved rounds: per contestant min/median, and ratios of medians. */
export function median(values: number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export interface Summary {
  /** Throughput (replica-steps/s) of every round. */
  rounds: number[];
  median: number;
  /** The slowest round's throughput (the min the issue asks for). */
  min: number;
  best: number;
}

export function summarize(rounds: number[]): Summary {
  const finite = rounds.filter(Number.isFinite);
  return {
    rounds,
    median: median(finite),
    min: finite.length ? Math.min(...finite) : NaN,
    best: finite.length ? Math.max(...finite) : NaN,
  };
}

/** "1.23M", "45.6k" */
export function si(x: number): string {
  if (!Number.isFinite(x)) return "—";
  return x >= 1e6
    ? `${(x / 1e6).toFixed(2)}M`
    : x >= 1e3
    ? `${(x / 1e3).toFixed(1)}k`
    : x.toFixed(1);
}
