/**
 * The P/Q presets (client/dashboard/presets_pq.ts): every run of every preset is a valid run
 * spec, the three runs of a preset share their data seed, and the presets the schema's
 * sources name exist (issue 14: eq. 1.1's mixture, γ0 = 0, the theory's stopping rule).
 */
import assert from "node:assert/strict";
import "../client/dashboard/presets_pq.ts";
import { findPreset, presets, presetSpecs } from "../client/dashboard/presets.ts";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { largeLrParams } from "../server/experiments/large_lr.ts";
import { labelNoiseParams } from "../server/experiments/label_noise_anneal.ts";

const PQ = ["large-lr", "label-noise-anneal"];

Deno.test("every P/Q preset run validates, one data seed per preset", () => {
  const pq = presets().filter((p) => PQ.includes(p.experiment));
  assert.ok(pq.length >= 7);
  for (const p of pq) {
    const specs = presetSpecs(p, { backend: "wasm" }).map((s) => validateRunSpec(s));
    assert.equal(new Set(specs.map((s) => s.params.seed)).size, 1, p.id);
  }
});

Deno.test("the presets named by the schema's sources exist with the settings they claim", () => {
  const named = [largeLrParams, labelNoiseParams].flatMap((schema) =>
    Object.values(schema).flatMap((s) => [...(s.source ?? "").matchAll(/preset ([a-z0-9.-]+)/g)])
      .map((m) => m[1])
  );
  assert.ok(named.length >= 3);
  for (const id of named) assert.ok(findPreset(id), `preset ${id}`);
  const mixture = findPreset("large-lr-illustrative-mixture")!;
  for (const run of mixture.runs) {
    const s = validateRunSpec(presetSpecs(mixture)[0]);
    assert.equal(s.params.q0, 0.2);
    assert.equal((s.params.p0_scale as number) * (s.params.kappa_sq as number) / 2, 0.2);
    assert.ok(run.params.algo);
  }
  const gamma = validateRunSpec(presetSpecs(findPreset("large-lr-gamma0-zero")!)[0]);
  assert.equal(gamma.params.gamma_scale, 0);
  // The regime search's settings (docs/experiments/large-lr.md tables 3d and 4).
  for (const s of presetSpecs(findPreset("large-lr-q-first-d512")!).map(validateRunSpec)) {
    assert.deepEqual(
      [s.params.d, s.params.m_p, s.params.m_q, s.params.tau0, s.steps, s.replicas],
      [512, 16, 64, 0.1, 12000, 5],
    );
    assert.ok(Math.abs((s.params.r_scale as number) * 512 ** -0.75 - 0.88) < 1e-3);
  }
  const blocks = presetSpecs(findPreset("large-lr-noise-blocks-q")!).map(validateRunSpec);
  assert.deepEqual(blocks.map((s) => s.params.algo), ["large-then-small", "small"]);
  for (const s of blocks) {
    assert.deepEqual(
      [s.params.m, s.params.tau0, s.params.lambda_scale, s.params.r_scale, s.params.anneal_step],
      [1024, 1.5, 1, 20, 1000],
    );
  }
  for (const id of ["large-lr-theory", "label-noise-anneal-theory"]) {
    for (const s of presetSpecs(findPreset(id)!)) {
      assert.equal(validateRunSpec(s).params.stop, "loss", id);
    }
  }
});
