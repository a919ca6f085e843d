/**
 * The lab's side of `deno task bench --peers`: one run of the wasm backend, timed like the
 * Python peers (setup and compile apart from stepping), printed as one JSON line. Run as its
 * own process so every contestant starts cold and obeys the same CPU pinning.
 * Usage: deno run -A bench/peers/lab_contestant.ts EXPERIMENT REPLICAS STEPS [EVERY] [THREADS]
 * With THREADS > 1 the replicas are split across that many workers as `lab run --threads` does
 * (server/engine/threaded_session.ts); with 1 the session steps in this process, as before.
 * The first advance() runs the whole run in one go, with no warm-up, as the CLI does: that is
 * what exposed the baseline-tier trap (server/engine/wasm/call_length.ts).
 */
import { validateRunSpec } from "../../server/experiments/registry.ts";
import { BACKENDS } from "../../server/engine/open.ts";
import { openThreadedSession } from "../../server/engine/threaded_session.ts";
import { BENCH_CASES } from "../../test/bench_cases.ts";
import { PEER_CASES } from "./cases.ts";
import { finalMetric } from "./metric.ts";

const processStart = performance.now();
const [experiment, replicasArg, stepsArg, everyArg, threadsArg] = Deno.args;
const peerCase = PEER_CASES[experiment];
const params = peerCase?.labParams ?? BENCH_CASES.find((c) => c.experiment === experiment)?.params;
if (!params) throw new Error(`lab_contestant: no bench case for experiment ${experiment}`);
const replicas = Number(replicasArg), steps = Number(stepsArg);
const every = everyArg ? Number(everyArg) : steps;
const spec = validateRunSpec({
  experiment,
  params,
  replicas,
  steps,
  every,
  backend: "wasm",
});
const threads = threadsArg ? Number(threadsArg) : 1;
const t0 = performance.now();
const session = threads > 1
  ? await openThreadedSession({ ...spec, backend: "wasm" }, undefined, { threads })
  : await BACKENDS.wasm.open(spec);
await session.advance(0); // the step-0 snapshot: setup, not stepping
const t1 = performance.now();
const result = await session.advance(steps);
const t2 = performance.now();
await session.dispose();
const last = result.snapshots[result.snapshots.length - 1];
console.log(JSON.stringify({
  contestant: "lab",
  experiment,
  replicas,
  steps,
  every,
  threads,
  compile_s: (t1 - t0) / 1000,
  run_s: (t2 - t1) / 1000,
  steps_per_s: steps / ((t2 - t1) / 1000),
  replica_steps_per_s: replicas * steps / ((t2 - t1) / 1000),
  process_s: (performance.now() - processStart) / 1000,
  ...(peerCase ? { [peerCase.metric]: finalMetric(last.metrics[peerCase.metric]) } : {}),
}));
