/**
 * Separate block widths m_p, m_q (issue 14) as a user meets them: `lab show` lists both with
 * their sources, an odd width is a one-line field error, and the WebGPU P/Q kernel (one row
 * count for both blocks) refuses unequal widths with a field error instead of running the
 * wrong network. The numbers themselves: test/parity_wasm_pq_test.ts, test/pq_model_test.ts,
 * test/checkpoint_session_test.ts.
 */
import assert from "node:assert/strict";
import { runLab } from "./lab_harness.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { SpecError } from "../server/experiments/schema.ts";
import { WEBGPU_SESSIONS } from "../server/engine/webgpu/backend.ts";

const lab = runLab;

Deno.test("lab show lists m_p and m_q with their per-block scaling and sources", async () => {
  for (const experiment of ["large-lr", "label-noise-anneal"]) {
    const show = await lab("show", experiment);
    assert.equal(show.code, 0);
    for (const name of ["m_p", "m_q"]) {
      assert.match(
        show.stdout,
        new RegExp(`--${name}=0\\n\\s+width of the . block.*1/√${name}; 0 = m`),
      );
      assert.match(show.stdout, new RegExp(`--${name}=0\\n.*\\n.*\\n\\s+source: issue 14`));
    }
  }
});

Deno.test("an odd block width is a one-line field error", async () => {
  // Found when the run is prepared, as for an odd m (exit status 1, not the validator's 2).
  const run = await lab("run", "large-lr", "--m_q=5", "--steps=1");
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /^error: params\.m_q: must be 0 \(= m\) or even .*, got 5\n$/);
});

for (const experiment of ["large-lr", "label-noise-anneal"]) {
  Deno.test(`webgpu refuses ${experiment} with m_p ≠ m_q, naming the field`, () => {
    const spec = validateRunSpec({
      experiment,
      replicas: 1,
      steps: 10,
      every: 5,
      backend: "webgpu",
      params: { d: 8, m: 8, m_p: 8, m_q: 4 },
    });
    assert.throws(
      () => WEBGPU_SESSIONS[experiment](spec),
      (e: unknown) =>
        e instanceof SpecError && e.errors[0].field === "params.m_q" &&
        /webgpu backend runs equal block widths only, got m_p = 8 and m_q = 4/.test(e.message),
    );
  });
}
