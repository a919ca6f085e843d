/**
 * large-lr's noise pairs (`noise_pairs=on`, issue 14's noise-blocking measure in one run):
 * replicas R/2..R−1 are the noise-free twins of replicas 0..R/2−1 — same data, initialisation
 * and second layer, τ_ξ = τ_pre = 0 — so each half equals a separate run, replica by replica.
 */
import assert from "node:assert/strict";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import type { RunSpec, Snapshot } from "../server/experiments/types.ts";
import { SpecError } from "../server/experiments/schema.ts";

function spec(params: Record<string, unknown>, replicas: number): RunSpec {
  return validateRunSpec({
    experiment: "large-lr",
    replicas,
    steps: 60,
    every: 20,
    backend: "reference",
    params: {
      algo: "large-then-small",
      d: 12,
      kappa_sq: 0.25,
      m: 10,
      n_test: 20,
      r_scale: 10,
      tau0: 0.3,
      eta1: 5,
      eta2: 0.5,
      anneal: "step",
      anneal_step: 30,
      ...params,
    },
  });
}

async function snapshots(s: RunSpec): Promise<Snapshot[]> {
  const exp = getExperiment("large-lr");
  return (await exp.reference(exp.prepare(s), s).advance(s.steps)).snapshots;
}

Deno.test("noise pairs: the first half is the noisy run, the second its noise-free twin", async () => {
  const paired = await snapshots(spec({ noise_pairs: "on" }, 4));
  const noisy = await snapshots(spec({}, 2));
  const quiet = await snapshots(spec({ xi_scale: 0 }, 2));
  for (let i = 0; i < paired.length; i++) {
    for (const name of ["train_loss", "train_loss_q_only", "p_alignment", "v_norm"]) {
      const got = paired[i].metrics[name];
      assert.deepEqual([got[0], got[1]], [...noisy[i].metrics[name]], `${name}, noisy half`);
      assert.deepEqual([got[2], got[3]], [...quiet[i].metrics[name]], `${name}, quiet half`);
    }
  }
  // The twins differ (the noise matters at τ0 = 0.3).
  const last = paired[paired.length - 1].metrics.v_norm;
  assert.notEqual(last[0], last[2]);
});

Deno.test("noise pairs need an even number of replicas", () => {
  const s = spec({ noise_pairs: "on" }, 3);
  assert.throws(() => getExperiment("large-lr").prepare(s), (e: unknown) => {
    return e instanceof SpecError && /params\.noise_pairs/.test(JSON.stringify(e.errors ?? e));
  });
});
