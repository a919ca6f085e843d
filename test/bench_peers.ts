/**
 * `deno task bench --peers`: the lab's wasm backend against JAX and numba baselines on the
 * same machine (bench/peers/), run interleaved (lab, jax, numba, lab, jax, numba, … for
 * --rounds rounds, at least 3) so that load from other processes hits every contestant alike;
 * reported as min/median per contestant and the ratio of medians, once with every contestant
 * on one thread and once with all cores. Each result's final metric is checked against the
 * band a correct update reaches (bench/peers/cases.ts). Then the lab alone, every experiment,
 * `--every` 1000 against 250,000 (the baseline-tier trap, server/engine/wasm/call_length.ts).
 * Flags: --rounds=N  --modes=1-thread,all-core  --experiments=a,b  --no-every  --json
 */
import { PEER_CASES } from "../bench/peers/cases.ts";
import { BENCH_CASES } from "./bench_cases.ts";
import { ensurePeersVenv } from "./bench_peers_venv.ts";
import {
  allCores,
  type ContestantName,
  CONTESTANTS,
  launch,
  runContestant,
  type RunResult,
  type ThreadMode,
} from "./bench_peers_contestants.ts";
import { si, summarize, type Summary } from "./bench_peers_stats.ts";

export interface PeersOptions {
  rounds: number;
  modes: ThreadMode[];
  experiments?: string[];
  everyCheck: boolean;
  json: boolean;
}

/** FLOP of one shape-matters replica-step at the paper size (d = 100, n = 40): 4nd + 6d. */
const SHAPE_FLOP_PER_STEP = 4 * 40 * 100 + 6 * 100;

interface Row {
  mode: ThreadMode;
  experiment: string;
  replicas: number;
  steps: number;
  contestant: ContestantName;
  throughput: Summary;
  compile_s: number;
  wall_s: number;
  metric: string;
  value: number;
  inBand: boolean;
  /** Median of the peak probe's GFLOP/s in the same rounds (shape-matters, one replica). */
  peakGflops?: number;
  /** The same for the fused multiply-add peak (null: no relaxed SIMD). */
  fmaPeakGflops?: number | null;
}

const EVERY_STEPS = [1000, 250_000];

function out(json: boolean, line: string, record: unknown) {
  console.log(json ? JSON.stringify(record) : line);
}

async function peerCase(
  opts: PeersOptions,
  python: string,
  mode: ThreadMode,
  experiment: string,
  single: boolean,
): Promise<Row[]> {
  const c = PEER_CASES[experiment];
  const replicas = single ? 1 : c.batchReplicas;
  const steps = single ? c.steps.single : c.steps.batch;
  const [lo, hi] = single ? c.band.single : c.band.batch;
  const results = new Map<ContestantName, RunResult[]>(CONTESTANTS.map((n) => [n, []]));
  // The Wasm SIMD peak of one core, interleaved with the one-replica shape-matters case.
  const withPeak = experiment === "shape-matters" && single && mode === "1-thread";
  const peaks: number[] = [];
  const fmaPeaks: number[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    for (const who of CONTESTANTS) {
      const r = await runContestant(launch(who, experiment, replicas, steps, mode, python));
      results.get(who)!.push(r);
      if (opts.json) console.log(JSON.stringify({ round, mode, ...r }));
    }
    if (withPeak) {
      const probe = await runContestant(peakLaunch());
      peaks.push(Number(probe.peak_gflops));
      if (probe.fma_peak_gflops != null) fmaPeaks.push(Number(probe.fma_peak_gflops));
    }
  }
  return CONTESTANTS.map((who) => {
    const rs = results.get(who)!;
    const values = rs.map((r) => Number(r[c.metric]));
    const value = values.sort((a, b) => a - b)[values.length >> 1];
    return {
      mode,
      experiment,
      replicas,
      steps,
      contestant: who,
      throughput: summarize(rs.map((r) => r.replica_steps_per_s)),
      compile_s: summarize(rs.map((r) => r.compile_s)).median,
      wall_s: summarize(rs.map((r) => r.wall_s)).median,
      metric: c.metric,
      value,
      inBand: rs.every((r) => Number(r[c.metric]) >= lo && Number(r[c.metric]) <= hi),
      ...(withPeak
        ? {
          peakGflops: summarize(peaks).median,
          fmaPeakGflops: fmaPeaks.length ? summarize(fmaPeaks).median : null,
        }
        : {}),
    };
  });
}

function printCase(opts: PeersOptions, rows: Row[]) {
  const lab = rows.find((r) => r.contestant === "lab")!;
  const head = `${lab.mode} ${lab.experiment} R=${lab.replicas} ${si(lab.steps)} steps`;
  if (!opts.json) console.log(`\n${head}`);
  for (const r of rows) {
    const ratio = lab.throughput.median / r.throughput.median;
    out(
      opts.json,
      `  ${r.contestant.padEnd(6)} median ${si(r.throughput.median).padStart(7)} ` +
        `min ${si(r.throughput.min).padStart(7)} replica-steps/s  compile ${
          r.compile_s.toFixed(2).padStart(5)
        } s  whole run ${r.wall_s.toFixed(2).padStart(5)} s  ${r.metric} ${
          r.value.toPrecision(3)
        } ${r.inBand ? "in band" : "OUT OF BAND"}` +
        (r.contestant === "lab" ? "" : `  lab ÷ ${r.contestant} ${ratio.toFixed(2)}×`),
      { summary: "peers", ...r, lab_over_this: ratio },
    );
  }
  if (lab.peakGflops) {
    const gflops = lab.throughput.median * SHAPE_FLOP_PER_STEP / 1e9;
    out(
      opts.json,
      `  peak   Wasm SIMD128 mul+add, one core: ${lab.peakGflops.toFixed(1)} GFLOP/s (median of ` +
        `rounds); lab ${gflops.toFixed(1)} GFLOP/s = ${
          (100 * gflops / lab.peakGflops).toFixed(0)
        }% of peak`,
      { summary: "peak", peak_gflops: lab.peakGflops, lab_gflops: gflops },
    );
    if (lab.fmaPeakGflops) {
      out(
        opts.json,
        `  peak   Wasm relaxed-SIMD FMA, one core: ${lab.fmaPeakGflops.toFixed(1)} GFLOP/s; ` +
          `lab ${gflops.toFixed(1)} GFLOP/s = ${
            (100 * gflops / lab.fmaPeakGflops).toFixed(0)
          }% of the FMA peak`,
        { summary: "fma_peak", fma_peak_gflops: lab.fmaPeakGflops, lab_gflops: gflops },
      );
    }
  }
}

/** The lab's all-core median over its 1-thread median, per case measured in both modes. */
function printThreadScaling(opts: PeersOptions, rows: Row[]) {
  const labRows = rows.filter((r) => r.contestant === "lab");
  for (const all of labRows.filter((r) => r.mode === "all-core")) {
    const one = labRows.find((r) =>
      r.mode === "1-thread" && r.experiment === all.experiment && r.replicas === all.replicas
    );
    if (!one) continue;
    const ratio = all.throughput.median / one.throughput.median;
    out(
      opts.json,
      `lab ${all.experiment} R=${all.replicas}: all-core (${allCores()} threads) ÷ 1-thread ` +
        `${ratio.toFixed(2)}×`,
      { summary: "threads", experiment: all.experiment, replicas: all.replicas, ratio },
    );
  }
}

/** The peak probe (test/bench_peak.ts) as a process pinned like the 1-thread contestants. */
function peakLaunch() {
  const probe = new URL("./bench_peak.ts", import.meta.url).pathname;
  return { cmd: "taskset", args: ["-c", "0", Deno.execPath(), "run", "-A", probe], env: {} };
}

/** Lab alone, every experiment, --every 1000 against 250,000, interleaved, one thread. */
async function everyCheck(opts: PeersOptions) {
  if (!opts.json) console.log("\nlab steps/s against --every (1 thread, one replica)");
  for (const c of BENCH_CASES) {
    const steps = c.steps(1, "wasm", false);
    const rounds: number[][] = EVERY_STEPS.map(() => []);
    for (let round = 0; round < opts.rounds; round++) {
      for (const [k, every] of EVERY_STEPS.entries()) {
        const l = launch("lab", c.experiment, 1, steps, "1-thread", "", every);
        rounds[k].push((await runContestant(l)).steps_per_s);
      }
    }
    const [small, large] = rounds.map((r) => summarize(r));
    const ratio = large.median / small.median;
    out(
      opts.json,
      `  ${c.experiment.padEnd(20)} every=1000 ${si(small.median).padStart(7)}  every=250000 ${
        si(large.median).padStart(7)
      }  ratio ${ratio.toFixed(2)} ${Math.abs(ratio - 1) <= 0.1 ? "within 10%" : "NOT within 10%"}`,
      { summary: "every", experiment: c.experiment, steps, small, large, ratio },
    );
  }
}

export async function benchPeers(opts: PeersOptions): Promise<void> {
  const started = performance.now();
  const python = await ensurePeersVenv(console.error);
  if (!opts.json) {
    console.log(
      `peers: ${opts.rounds} interleaved rounds (lab, jax, numba) per case; ` +
        `1-thread = taskset -c 0 + one-thread pools; all-core = ${allCores()} threads offered ` +
        `(the lab splits its replicas across that many workers, as lab run --threads does)`,
    );
  }
  const rows: Row[] = [];
  for (const mode of opts.modes) {
    for (const experiment of Object.keys(PEER_CASES)) {
      if (opts.experiments && !opts.experiments.includes(experiment)) continue;
      for (const single of [true, false]) {
        const caseRows = await peerCase(opts, python, mode, experiment, single);
        printCase(opts, caseRows);
        rows.push(...caseRows);
      }
    }
  }
  printThreadScaling(opts, rows);
  if (opts.everyCheck) await everyCheck(opts);
  if (!opts.json) {
    console.log(`\nbench --peers done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
}
