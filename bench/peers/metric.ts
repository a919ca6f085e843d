/** The median over replicas of a final metric (NaN if every replica diverged). */
export function finalMetric(values: ArrayLike<number>): number {
  const finite = Array.from(values).filter(Number.isFinite).sort((a, b) => a - b);
  if (finite.length === 0) return NaN;
  const mid = finite.length >> 1;
  return finite.length % 2 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2;
}
