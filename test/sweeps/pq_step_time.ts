/**
 * Milliseconds per step of one `large-lr` replica on the wasm backend, for the block-alone
 * cost figures of docs/experiments/large-lr.md (Block-alone runs). Not a test.
 *
 *   nice deno run -A test/sweeps/pq_step_time.ts <d> <blocks> [steps=201] [m=256] [m_p] [m_q]
 *     [algo=small]
 *
 * algo lnsgd-ls, lnsgd-s or fbgd-ls times `label-noise-anneal` instead (its defaults otherwise:
 * the SGD algorithms include a loss check every 100 steps).
 *
 * Times steps 1..steps (the first step and its snapshot excluded; the last snapshot's metrics
 * are included, ≈ one forward pass over the data).
 */
import { validateRunSpec } from "../../server/experiments/registry.ts";
import { wasmBackend } from "../../server/engine/wasm/backend.ts";

const [d, blocks, steps = 201, m = 256, mP = 0, mQ = 0] = Deno.args.slice(0, 6).map((a, i) =>
  i === 1 ? a : Number(a)
) as [number, string, number?, number?, number?, number?];
const algo = Deno.args[6] ?? "small";
const labelNoise = ["lnsgd-ls", "lnsgd-s", "fbgd-ls"].includes(algo);
const spec = validateRunSpec({
  experiment: labelNoise ? "label-noise-anneal" : "large-lr",
  replicas: 1,
  steps,
  every: steps,
  backend: "wasm",
  params: {
    algo,
    d,
    m,
    m_p: mP,
    m_q: mQ,
    blocks,
    n_test: 50,
    ...(labelNoise ? {} : { eta2: 1 }),
  },
});
const session = await wasmBackend.open(spec);
await session.advance(1);
const t0 = performance.now();
await session.advance(steps);
const ms = (performance.now() - t0) / (steps - 1);
console.log(
  `${algo} d=${d} blocks=${blocks} m=${m} m_p=${mP || m} m_q=${mQ || m}: ${
    ms.toFixed(3)
  } ms/step (wasm, N=${Math.round(d / 0.2)}, 1 replica)`,
);
await session.dispose();
