/**
 * `deno task bench`: throughput per experiment and backend, reported, never asserted.
 *  - steps/s for one replica and replica-steps/s for a large batch, per available backend;
 *  - for shape-matters, the Wasm-SIMD kernel against a plain TypeScript scalar loop of the
 *    same float32 update (what SIMD and Wasm buy), and achieved GFLOP/s;
 *  - with --json, one JSON object per line for machines.
 * Flags: --experiments=a,b  --backends=wasm,webgpu  --quick (shorter runs)  --json
 * With --peers, the lab against JAX and numba instead (test/bench_peers.ts; flags there).
 * With --store, the run store instead (bench_store.ts: write rate, history, CSV, startup).
 * With --cluster, the multi-box mode instead (bench_cluster.ts: records/s through NATS, a
 * sweep's wall time with 1, 2 and 3 workers).
 */
import { parseCliArgs } from "../server/cli/args.ts";
import { EXPERIMENTS, validateRunSpec } from "../server/experiments/registry.ts";
import { BACKENDS, probeBackend } from "../server/engine/open.ts";
import type { BackendName, RunSpec } from "../server/experiments/types.ts";
import { prepareShapeMatters } from "../server/experiments/shape_matters.ts";
import { BENCH_CASES, type BenchCase } from "./bench_cases.ts";
import { benchStore } from "./bench_store.ts";

const { flags } = parseCliArgs(Deno.args);
if (flags.has("store")) {
  await benchStore();
  Deno.exit(0);
}
const quick = flags.has("quick");
const json = flags.has("json");
const onlyExperiments = typeof flags.get("experiments") === "string"
  ? String(flags.get("experiments")).split(",")
  : undefined;
const onlyBackends = typeof flags.get("backends") === "string"
  ? String(flags.get("backends")).split(",") as BackendName[]
  : ["wasm", "webgpu"] as BackendName[];

interface BenchRow {
  experiment: string;
  backend: string;
  adapter: string;
  replicas: number;
  steps: number;
  seconds: number;
  steps_per_s: number;
  replica_steps_per_s: number;
  gflops?: number;
  peak_fraction?: number;
  note?: string;
}

const rows: BenchRow[] = [];

function report(row: BenchRow) {
  rows.push(row);
  if (json) console.log(JSON.stringify(row));
  else {
    const fmt = (x: number) =>
      x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(1);
    console.log(
      `${row.experiment.padEnd(20)} ${row.backend.padEnd(10)} R=${
        String(row.replicas).padEnd(5)
      } ` +
        `${fmt(row.steps_per_s).padStart(8)} steps/s ${
          fmt(row.replica_steps_per_s).padStart(8)
        } replica-steps/s` +
        (row.gflops !== undefined ? ` ${row.gflops.toFixed(2)} GFLOP/s` : "") +
        (row.peak_fraction !== undefined
          ? ` (${(100 * row.peak_fraction).toFixed(2)}% of peak)`
          : "") +
        (row.note ? `  [${row.note}]` : "") + `  (${row.adapter})`,
    );
  }
}

/** Times a session through `steps` steps after a short warm-up, excluding setup. */
async function timeSession(spec: RunSpec, backend: BackendName) {
  const session = await BACKENDS[backend].open({ ...spec, backend });
  try {
    const warm = Math.min(spec.every, spec.steps);
    await session.advance(warm);
    const t0 = performance.now();
    await session.advance(spec.steps);
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, steps: spec.steps - warm, adapter: session.adapter };
  } finally {
    await session.dispose();
  }
}

/** Nominal FP32 (non-tensor) peaks of known GPUs, for the roofline fraction. */
function nominalPeakGflops(adapter: string): number | undefined {
  if (/H100/i.test(adapter)) return 67_000;
  if (/H200/i.test(adapter)) return 67_000;
  return undefined;
}

async function benchCase(c: BenchCase, backend: BackendName, software: boolean) {
  for (const replicas of [1, c.batchReplicas]) {
    const steps = quick
      ? Math.ceil(c.steps(replicas, backend, software) / 10)
      : c.steps(replicas, backend, software);
    const spec = validateRunSpec({
      experiment: c.experiment,
      params: c.params,
      replicas,
      steps,
      every: Math.max(1, Math.floor(steps / 10)),
      backend,
    });
    const t = await timeSession(spec, backend);
    const sps = t.steps / t.seconds;
    const flops = c.flopsPerReplicaStep?.(spec);
    const gflops = flops ? flops * sps * replicas / 1e9 : undefined;
    const peak = nominalPeakGflops(t.adapter);
    report({
      experiment: c.experiment + (c.label ? `:${c.label}` : ""),
      backend,
      adapter: t.adapter,
      replicas,
      steps: t.steps,
      seconds: t.seconds,
      steps_per_s: sps,
      replica_steps_per_s: sps * replicas,
      gflops,
      peak_fraction: gflops && peak ? gflops / peak : undefined,
    });
  }
}

/**
 * The same float32 label-noise update as the kernels, as a plain scalar TypeScript loop
 * (Float32Array state, Math.fround), with the noise replaced by a cheap LCG: what you get
 * without Wasm or SIMD.
 */
function scalarShapeMattersBaseline(steps: number) {
  const spec = validateRunSpec({
    experiment: "shape-matters",
    params: { algo: "label-noise" },
    replicas: 1,
    steps,
    every: steps,
  });
  const p = prepareShapeMatters(spec);
  const { d, n, X, y } = p;
  const v = new Float32Array(d).fill(1);
  const u = new Float32Array(d), g = new Float32Array(d), res = new Float32Array(n);
  let seed = 12345;
  const t0 = performance.now();
  for (let t = 0; t < steps; t++) {
    for (let k = 0; k < d; k++) u[k] = Math.fround(v[k] * v[k]);
    for (let i = 0; i < n; i++) {
      let f = 0;
      for (let k = 0; k < d; k++) f = Math.fround(f + Math.fround(u[k] * X[i * d + k]));
      res[i] = Math.fround(f - y[i]);
    }
    g.fill(0);
    for (let i = 0; i < n; i++) {
      const ri = res[i];
      for (let k = 0; k < d; k++) g[k] = Math.fround(g[k] + Math.fround(ri * X[i * d + k]));
    }
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const i = seed % n;
    const s = ((seed >>> 8) / 16777216 - 0.5) * 3.4;
    const lr = 0.01;
    for (let k = 0; k < d; k++) {
      v[k] = Math.fround(v[k] - lr * (g[k] * v[k] / n - s * v[k] * X[i * d + k]));
    }
  }
  return (performance.now() - t0) / 1000;
}

if (import.meta.main && flags.has("cluster")) {
  const { benchCluster } = await import("./bench_cluster.ts");
  await benchCluster({
    steps: Number(flags.get("steps") ?? 20_000),
    sweepSteps: Number(flags.get("sweep-steps") ?? 100_000),
    json,
  });
} else if (import.meta.main && flags.has("peers")) {
  const { benchPeers } = await import("./bench_peers.ts");
  await benchPeers({
    rounds: Math.max(3, Number(flags.get("rounds") ?? 3) || 3),
    modes: (typeof flags.get("modes") === "string"
      ? String(flags.get("modes")).split(",")
      : ["1-thread", "all-core"]) as ("1-thread" | "all-core")[],
    experiments: onlyExperiments,
    everyCheck: !flags.has("no-every"),
    json,
  });
} else if (import.meta.main) {
  const started = performance.now();
  for (const c of BENCH_CASES) {
    if (onlyExperiments && !onlyExperiments.includes(c.experiment)) continue;
    if (!(c.experiment in EXPERIMENTS)) continue;
    for (const backend of onlyBackends) {
      const probe = await probeBackend(backend);
      if (!probe.available) {
        if (!json) {
          console.log(
            `${c.experiment.padEnd(20)} ${backend.padEnd(10)} unavailable: ${probe.reason}`,
          );
        }
        continue;
      }
      if (!BACKENDS[backend].supports(c.experiment)) continue;
      try {
        await benchCase(c, backend, probe.fallback);
      } catch (e) {
        console.log(
          `${c.experiment.padEnd(20)} ${backend.padEnd(10)} failed: ${(e as Error).message}`,
        );
      }
    }
    if (c.experiment === "shape-matters" && (!onlyBackends || onlyBackends.includes("wasm"))) {
      const steps = quick ? 5_000 : 30_000;
      const seconds = scalarShapeMattersBaseline(steps);
      report({
        experiment: "shape-matters",
        backend: "plain-ts",
        adapter: "scalar TypeScript loop, float32",
        replicas: 1,
        steps,
        seconds,
        steps_per_s: steps / seconds,
        replica_steps_per_s: steps / seconds,
        gflops: (4 * 40 * 100 + 6 * 100) * steps / seconds / 1e9,
        note: "baseline for the SIMD kernel",
      });
    }
  }
  if (!json) console.log(`bench done in ${((performance.now() - started) / 1000).toFixed(1)}s`);
  if (flags.has("dashboard")) {
    const { benchDashboard } = await import("./bench_dashboard.ts");
    const r = await benchDashboard();
    console.log(json ? JSON.stringify({ dashboard: r }) : `dashboard: ${JSON.stringify(r)}`);
  }
}
