/** The closeness check of the reference tests (closed forms against finite differences). */
import assert from "node:assert/strict";

/** max_k |a_k − b_k| ≤ rel · max_k |b_k|: an error relative to the whole vector's scale. */
export function assertClose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  rel: number,
  what: string,
): void {
  let scale = 0, err = 0;
  for (let k = 0; k < a.length; k++) {
    scale = Math.max(scale, Math.abs(b[k]));
    err = Math.max(err, Math.abs(a[k] - b[k]));
  }
  assert.ok(err <= rel * Math.max(scale, 1e-12), `${what}: max error ${err} vs scale ${scale}`);
}
