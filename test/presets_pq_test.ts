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
  for (const id of ["large-lr-theory", "label-noise-anneal-theory"]) {
    for (const s of presetSpecs(findPreset(id)!)) {
      assert.equal(validateRunSpec(s).params.stop, "loss", id);
    }
  }
});
