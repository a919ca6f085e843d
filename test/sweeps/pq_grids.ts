/**
 * The sweep specs behind docs/experiments/large-lr.md and label-noise-anneal.md, printed as
 * JSON for test/sweeps/pq_sweep.ts:
 *
 *   deno run test/sweeps/pq_grids.ts grid > grid.json       # the targeted grid ("round 2")
 *   deno run test/sweeps/pq_grids.ts defaults > def.json    # the current defaults, 5 seeds, all algos
 *   nice -n 10 deno run -A test/sweeps/pq_sweep.ts grid.json --jsonl=grid.jsonl \
 *     [--shard=K/S --deadline=SECONDS]
 *
 * In every world the runs being compared share data seed, initialisation and noise streams;
 * the small-LR runs of large-lr take the same η1 (it sets τ_ξ, eq. 3.3).
 */

type Spec = {
  label: string;
  experiment: string;
  params: Record<string, unknown>;
  replicas: number;
  steps: number;
  every: number;
  backend: string;
};

function product<T extends unknown[][]>(...lists: T): unknown[][] {
  return lists.reduce<unknown[][]>((acc, list) => acc.flatMap((a) => list.map((x) => [...a, x])), [
    [],
  ]);
}

export function grid(): Spec[] {
  const specs: Spec[] = [];
  let world = 1000;
  for (
    const [r_scale, tau0, lambda_scale, eta1] of product(
      [10, 20, 40],
      [0.1, 0.5, 1.5],
      [0.03, 0.3, 1],
      [10, 40],
    )
  ) {
    world++;
    const params = {
      d: 64,
      kappa_sq: 0.2,
      q0: 0.6,
      m: 256,
      r_scale,
      tau0,
      lambda_scale,
      eta1,
      eta2: 0.5,
      n_test: 1000,
      seed: world * 10,
      anneal: "step",
      anneal_step: 1000,
    };
    for (const algo of ["small", "large-then-small"]) {
      specs.push({
        label: `w${world} ${algo}`,
        experiment: "large-lr",
        params: { ...params, algo },
        replicas: 2,
        steps: 4000,
        every: 500,
        backend: "wasm",
      });
    }
  }
  // World numbers (and so seeds) also count the η1 = 30·η2 worlds that were generated and
  // then dropped to fit the machine time, so that the seeds match the recorded sweep.
  for (
    const [r_scale, tau0, delta, eta2, ratio] of product(
      [10, 20, 40],
      [0.1, 0.5],
      [0.02, 0.1, 0.3],
      [0.05, 0.2],
      [10, 30],
    )
  ) {
    world++;
    if (ratio === 30) continue;
    const params = {
      d: 64,
      kappa_sq: 0.2,
      q0: 0.6,
      m: 256,
      r_scale,
      tau0,
      delta,
      eta1: 10 * (eta2 as number),
      eta2,
      n_test: 1000,
      seed: world * 10,
      anneal: "step",
      anneal_step: 10000,
    };
    for (const algo of ["lnsgd-ls", "lnsgd-s", "fbgd-ls"]) {
      specs.push({
        label: `w${world} ${algo}`,
        experiment: "label-noise-anneal",
        params: { ...params, algo },
        replicas: 2,
        steps: 20000,
        every: 2500,
        backend: "wasm",
      });
    }
  }
  return specs;
}

export function defaults(): Spec[] {
  const run = (experiment: string, algo: string, steps: number, every: number): Spec => ({
    label: `${experiment} ${algo}`,
    experiment,
    params: { algo },
    replicas: 5,
    steps,
    every,
    backend: "wasm",
  });
  return [
    ...["small", "large-then-small", "small-preact-noise"].map((a) =>
      run("large-lr", a, 3000, 250)
    ),
    ...["lnsgd-ls", "lnsgd-s", "fbgd-ls"].map((a) => run("label-noise-anneal", a, 20000, 1000)),
  ];
}

if (import.meta.main) {
  const which = Deno.args[0];
  if (which !== "grid" && which !== "defaults") {
    console.error("usage: deno run test/sweeps/pq_grids.ts grid|defaults > specs.json");
    Deno.exit(2);
  }
  console.log(JSON.stringify(which === "grid" ? grid() : defaults()));
}
