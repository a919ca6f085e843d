/**
 * The contestants of `deno task bench --peers` and how each is started: the lab's wasm
 * backend (bench/peers/lab_contestant.ts) and the JAX and numba baselines (bench/peers/*.py),
 * each as its own process under the same thread budget.
 *  - "1-thread": every process pinned to CPU 0 (taskset) and told to use one thread (XLA's
 *    Eigen pool off, NUMBA_NUM_THREADS=1, the BLAS/OpenMP pools at 1).
 *  - "all-core": no pinning, every core offered to everyone (numba's prange, XLA's pool, the
 *    lab's --threads workers).
 * Every process prints one JSON line (steps/s without compile time, compile time apart).
 */
const ROOT = new URL("..", import.meta.url).pathname;

export type ThreadMode = "1-thread" | "all-core";
export type ContestantName = "lab" | "jax" | "numba";
export const CONTESTANTS: ContestantName[] = ["lab", "jax", "numba"];

export interface RunResult {
  contestant: ContestantName;
  experiment: string;
  replicas: number;
  steps: number;
  compile_s: number;
  run_s: number;
  steps_per_s: number;
  replica_steps_per_s: number;
  /** Wall time of the whole process as the bench saw it: time to a finished run. */
  wall_s: number;
  [metric: string]: unknown;
}

export function allCores(): number {
  return navigator.hardwareConcurrency || 1;
}

function threadEnv(mode: ThreadMode): Record<string, string> {
  const n = mode === "1-thread" ? 1 : allCores();
  return {
    NUMBA_NUM_THREADS: String(n),
    OMP_NUM_THREADS: String(n),
    OPENBLAS_NUM_THREADS: String(n),
    MKL_NUM_THREADS: String(n),
    // XLA's CPU client runs its Eigen pool on every core unless told not to.
    ...(mode === "1-thread" ? { XLA_FLAGS: "--xla_cpu_multi_thread_eigen=false" } : {}),
    // JAX would otherwise warn on stderr about missing accelerators.
    JAX_PLATFORMS: "cpu",
  };
}

export interface Launch {
  cmd: string;
  args: string[];
  env: Record<string, string>;
}

export function launch(
  who: ContestantName,
  experiment: string,
  replicas: number,
  steps: number,
  mode: ThreadMode,
  python: string,
  every = steps,
): Launch {
  const threads = mode === "1-thread" ? 1 : allCores();
  const inner = who === "lab"
    ? [
      Deno.execPath(),
      "run",
      "-A",
      `${ROOT}bench/peers/lab_contestant.ts`,
      experiment,
      String(replicas),
      String(steps),
      String(every),
      String(threads),
    ]
    : [
      python,
      `${ROOT}bench/peers/${experiment.replaceAll("-", "_")}_${who}.py`,
      "--replicas",
      String(replicas),
      "--steps",
      String(steps),
      "--threads",
      String(threads),
    ];
  const pinned = mode === "1-thread" ? ["taskset", "-c", "0", ...inner] : inner;
  return { cmd: pinned[0], args: pinned.slice(1), env: threadEnv(mode) };
}

/** Runs one contestant to the end; its last stdout line is the result. */
export async function runContestant(l: Launch): Promise<RunResult & Record<string, unknown>> {
  const t0 = performance.now();
  const out = await new Deno.Command(l.cmd, {
    args: l.args,
    env: l.env,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const wall = (performance.now() - t0) / 1000;
  const text = new TextDecoder().decode(out.stdout).trim();
  const line = text.split("\n").at(-1) ?? "";
  if (!out.success || !line.startsWith("{")) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ");
    throw new Error(`${l.args.find((a) => /contestant|_(jax|numba)\.py$/.test(a))}: ${err}`);
  }
  return { ...JSON.parse(line), wall_s: wall };
}
