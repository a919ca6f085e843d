/**
 * Numbers as people read them in CLI output: the shortest decimal at 4 significant digits
 * (10000, 0.01, 1.235e-7), never float noise such as 0.010000000000000002 or 1.000e+4.
 */
export function formatNumber(x: number, digits = 4): string {
  if (!Number.isFinite(x)) return String(x);
  return String(Number(x.toPrecision(digits)));
}

/** JSON for a line of text: numbers as above, with 12 digits (exact enough to copy back). */
export function readableJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) => typeof v === "number" && !Number.isInteger(v) ? Number(v.toPrecision(12)) : v,
  );
}
