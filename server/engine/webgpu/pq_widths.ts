/**
 * The WGSL P/Q kernel (pq_model.ts beside this file) has one row count for both blocks: a run
 * with separate widths m_p ≠ m_q (issue 14) is refused with a field error rather than run
 * with the wrong network. Nor does it group examples by ray (blocks = q-rays). The CPU
 * backends (reference, wasm) run both.
 */
import { pqShape } from "../../experiments/pq_model.ts";
import { SpecError } from "../../experiments/schema.ts";
import type { RunSpec } from "../../experiments/types.ts";

/** blocks = q-rays (the examples grouped by ray) runs on the CPU backends only. */
export function refuseQRays(spec: RunSpec): void {
  if (spec.params.blocks === "q-rays") {
    throw new SpecError([{
      field: "params.blocks",
      message: "the webgpu backend does not run blocks = q-rays: choose backend wasm or " +
        "reference, or blocks = q-plane (the same numbers up to rounding)",
    }]);
  }
}

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
