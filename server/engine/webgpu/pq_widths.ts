/**
 * The WGSL P/Q kernel (pq_model.ts beside this file) has one row count for both blocks: a run
 * with separate widths m_p ≠ m_q (issue 14) is refused with a field error rather than run
 * with the wrong network. The CPU backends (reference, wasm) run it.
 */
import { pqShape } from "../../experiments/pq_model.ts";
import { SpecError } from "../../experiments/schema.ts";
import type { RunSpec } from "../../experiments/types.ts";

export function refuseUnequalWidths(spec: RunSpec): void {
  const { halfP, halfQ } = pqShape(spec.params);
  if (halfP !== halfQ) {
    throw new SpecError([{
      field: "params.m_q",
      message: `the webgpu backend runs equal block widths only, got m_p = ${2 * halfP} and ` +
        `m_q = ${2 * halfQ}: choose backend wasm or reference, or equal widths`,
    }]);
  }
}
