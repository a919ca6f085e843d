/** Run-spec validation: defaults, dependent defaults, per-replica values, errors naming fields. */
import assert from "node:assert/strict";
import { validateRunSpec } from "../server/experiments/registry.ts";
import { SpecError } from "../server/experiments/schema.ts";

function errorsOf(input: unknown): string[] {
  try {
    validateRunSpec(input);
  } catch (e) {
    assert.ok(e instanceof SpecError);
    return e.errors.map((x) => `${x.field}: ${x.message}`);
  }
  assert.fail("expected a SpecError");
}

Deno.test("omitted fields take the experiment's defaults", () => {
  const spec = validateRunSpec({ experiment: "shape-matters" });
  assert.equal(spec.steps, 300000);
  assert.equal(spec.every, 1000);
  assert.equal(spec.backend, "auto");
  assert.equal(spec.params.d, 100);
  assert.equal(spec.params.n, 40);
  assert.equal(spec.params.lr, 0.01);
  assert.equal(spec.params.algo, "label-noise");
  assert.deepEqual(spec.params.lr_schedule, [[100000, 0.1], [200000, 0.1]]);
});

Deno.test("the LR schedule defaults to constant for algorithms other than label noise", () => {
  const spec = validateRunSpec({ experiment: "shape-matters", params: { algo: "gd" } });
  assert.deepEqual(spec.params.lr_schedule, []);
});

Deno.test("per-replica parameters accept one value per replica", () => {
  const spec = validateRunSpec({
    experiment: "shape-matters",
    replicas: 3,
    params: { lr: [0.01, 0.02, 0.03] },
  });
  assert.deepEqual(spec.params.lr, [0.01, 0.02, 0.03]);
  assert.match(
    errorsOf({ experiment: "shape-matters", replicas: 2, params: { lr: [0.01] } })[0],
    /params.lr: has 1 values but the run has 2 replicas/,
  );
  assert.match(
    errorsOf({ experiment: "shape-matters", params: { d: [1, 2] } })[0],
    /params.d: must be a single value/,
  );
});

Deno.test("every bad field is named with what is allowed", () => {
  const errs = errorsOf({
    experiment: "shape-matters",
    replicas: 0,
    params: { algo: "adam", lr: -1, bogus: 1, lr_schedule: [[5, 0.1], [2, 0.1]] },
    backend: "tpu",
  });
  const text = errs.join("\n");
  assert.match(text, /replicas: must be an integer in \[1, 65536\], got 0/);
  assert.match(text, /backend: must be one of auto, wasm, webgpu, reference/);
  assert.match(
    text,
    /params.algo: must be one of gd, label-noise, minibatch-noise, gaussian, langevin, got "adam"/,
  );
  assert.match(text, /params.lr: must be a number in \[1e-9, 10\]/);
  assert.match(text, /params.bogus: unknown parameter/);
  assert.match(text, /params.lr_schedule: must be a list of \[step, factor\] pairs/);
});

Deno.test("unknown experiment and non-object bodies are refused clearly", () => {
  assert.match(
    errorsOf({ experiment: "nope" })[0],
    /experiment: unknown experiment "nope"; known: shape-matters/,
  );
  assert.match(errorsOf([1, 2])[0], /must be a JSON object/);
  assert.match(errorsOf({})[0], /experiment: required/);
});
