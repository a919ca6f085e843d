/**
 * The regime search of issue 14 (docs/experiments/large-lr.md and label-noise-anneal.md,
 * "Regime search"): which block the P/Q network learns first, and whether the algorithm's
 * noise keeps Q from being learned, measured with the lab's own sessions on the CPU. Not a
 * test: it prints the tables the docs record.
 *
 *   nice -n 10 deno run -A test/sweeps/pq_regime.ts race|qrace|block|labelnoise|defaults [--quick]
 *   nice -n 10 deno run -A test/sweeps/pq_regime.ts defaults --only=lnsgd-ls,lnsgd-s,fbgd-ls
 *   nice -n 10 deno run -A test/sweeps/pq_regime.ts racewide --d=2048 [--r=0.5] [--tau0=1e-3]
 *     [--m_p=16] [--m_q=64] [--replicas=3] [--blocks=both|p|q-rays] [--horizon=16] [--every=N]
 *
 * race:       η-time Σγ at which the P-only and the Q-only training loss first fall below
 *             0.35 (snapshot resolution, 10 steps), both blocks trained together at a fixed
 *             LR η = 10 without noise or decay (xi_scale = 0, lambda_scale = 0), against d
 *             at fixed r = 0.5 (r_scale = 0.5·d^(3/4)), τ0 = 1e-3, up to η-time 12,000.
 * racewide:   the race of `race` at one large d per process (up to 2,048 on the CPU), with
 *             separate widths so that the W block is affordable (m_p = 16: 8 ReLU units on
 *             x1, O(N·8·d) per step; m_q = 64 as `race` used at d ≥ 128), up to η-time 16·d
 *             (P's η-time is ≈ 11.7·d), snapshots every max(10, d/64) steps; --horizon=H runs
 *             to η-time H·d, --every=N snapshots every N steps. --blocks=q-rays: Q's side
 *             alone, O(N + m_q) per step, so d = 8,192 takes about a minute.
 * block:      noise-blocking of Q at η1: pairs of runs that differ only in xi_scale (1 vs 0;
 *             same data, initialisation and replica keys, so the same seeds), no anneal, the
 *             Q-only training loss at equal η-time, over (r, τ0, λ, η1, m).
 * labelnoise: the same for label noise: LNSGD with η2 = η throughout, δ vs δ = 0.
 * defaults:   the three algorithms of each experiment at the lab's defaults, 5 seeds, with
 *             the median p_alignment at the anneal and the final P-only test errors;
 *             --only=ALGO,... keeps those algorithms (label-noise-anneal's table 2 is
 *             --only=lnsgd-ls,lnsgd-s,fbgd-ls).
 */
import { runOne, type SweepResult } from "./pq_sweep.ts";

type Spec = Record<string, unknown>;

const quick = Deno.args.includes("--quick");

/** First snapshot step at which `metric` is ≤ level, per replica (−1: never). */
function crossing(r: SweepResult, metric: string, level: number): number[] {
  const R = r.curves[0]?.metrics[metric]?.length ?? 0;
  return Array.from({ length: R }, (_, k) => {
    for (const c of r.curves) if (c.metrics[metric]?.[k] <= level) return c.step;
    return -1;
  });
}

function median(xs: number[]): number {
  const ok = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!ok.length) return NaN;
  const h = ok.length >> 1;
  return ok.length % 2 ? ok[h] : (ok[h - 1] + ok[h]) / 2;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function race() {
  const eta = 10;
  console.log("| d | N | m | steps | η-time P-only < 0.35 | η-time Q-only < 0.35 | first |");
  console.log("|---|---|---|---|---|---|---|");
  for (const d of quick ? [32, 64] : [32, 64, 128, 256]) {
    const m = d <= 64 ? 128 : 64;
    const steps = Math.ceil(12000 / eta);
    const spec: Spec = {
      experiment: "large-lr",
      replicas: 3,
      steps,
      every: 10,
      backend: "wasm",
      params: {
        algo: "small",
        d,
        m,
        r_scale: 0.5 * d ** 0.75,
        tau0: 1e-3,
        xi_scale: 0,
        lambda_scale: 0,
        eta2: eta,
        q0: 0.6,
        n_test: 200,
      },
    };
    const r = await runOne({ label: `race d=${d}`, ...spec });
    const p = crossing(r, "train_loss_p_only", 0.35).map((s) => s < 0 ? Infinity : s * eta);
    const q = crossing(r, "train_loss_q_only", 0.35).map((s) => s < 0 ? Infinity : s * eta);
    const n = Math.round(d / 0.2);
    const fmt = (xs: number[]) =>
      xs.map((x) => Number.isFinite(x) ? x : `>${steps * eta}`).join(", ");
    const first = median(p) < median(q) ? "P" : median(q) < median(p) ? "Q" : "tie";
    console.log(`| ${d} | ${n} | ${m} | ${steps} | ${fmt(p)} | ${fmt(q)} | ${first} |`);
  }
}

function flag(name: string, fallback: number): number {
  const a = Deno.args.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.slice(name.length + 3)) : fallback;
}

async function raceWide() {
  const eta = 10;
  const d = flag("d", 2048), r = flag("r", 0.5), tau0 = flag("tau0", 1e-3);
  const mP = flag("m_p", 16), mQ = flag("m_q", 64), replicas = flag("replicas", 3);
  // --blocks=p: the control, P's η-time with the Q block's inputs zeroed (same draws).
  const blocks = Deno.args.find((x) => x.startsWith("--blocks="))?.slice(9) ?? "both";
  const horizon = flag("horizon", 16);
  const steps = Math.ceil(horizon * d / eta);
  const every = flag("every", Math.max(10, Math.round(d / 64)));
  const res = await runOne({
    label: `racewide d=${d}`,
    experiment: "large-lr",
    replicas,
    steps,
    every,
    backend: "wasm",
    params: {
      algo: "small",
      d,
      m: mQ,
      m_p: mP,
      m_q: mQ,
      r_scale: r * d ** 0.75,
      tau0,
      xi_scale: 0,
      lambda_scale: 0,
      eta2: eta,
      q0: 0.6,
      n_test: 200,
      blocks,
    },
  });
  const p = crossing(res, "train_loss_p_only", 0.35).map((s) => s < 0 ? Infinity : s * eta);
  const q = crossing(res, "train_loss_q_only", 0.35).map((s) => s < 0 ? Infinity : s * eta);
  const fmt = (xs: number[]) =>
    xs.map((x) => Number.isFinite(x) ? x : `>${steps * eta}`).join(", ");
  // The Q block alone (q, q-plane, q-rays) has no P input: its P-only loss stays log 2.
  const qAlone = blocks.startsWith("q");
  const first = qAlone ? "—" : median(p) < median(q) ? "P" : median(q) < median(p) ? "Q" : "tie";
  console.log(
    `| ${d} | ${Math.round(d / 0.2)} | ${r} | ${tau0} | ${blocks} | ${mP} | ${mQ} | ${steps} | ${
      qAlone ? "(no P input)" : fmt(p)
    } | ${fmt(q)} | ${first} | ${res.seconds.toFixed(0)} s |`,
  );
}

/**
 * Q's side of the race alone, where it is cheap: Q's dynamics do not involve d (x2 lies in a
 * plane), so a small d with the same number of Q examples (N = 320, q0 = 0.6, as at d = 64)
 * measures the η-time Q needs at each r; the crossover d* is where P's η-time (race) reaches it.
 */
async function qrace() {
  const eta = 10;
  console.log("| r | τ0 | m | η-time Q-only < 0.35 (3 seeds) |");
  console.log("|---|---|---|---|");
  for (const r of [0.88, 0.5, 0.3]) {
    for (const tau0 of [1e-3, 0.1]) {
      const d = 16, steps = 20000;
      const res = await runOne({
        label: "qrace",
        experiment: "large-lr",
        replicas: 3,
        steps,
        every: 50,
        backend: "wasm",
        params: {
          algo: "small",
          d,
          kappa_sq: d / 320,
          m: 128,
          r_scale: r * d ** 0.75,
          tau0,
          xi_scale: 0,
          lambda_scale: 0,
          eta2: eta,
          n_test: 50,
        },
      });
      const q = crossing(res, "train_loss_q_only", 0.35).map((x) =>
        x < 0 ? `>${steps * eta}` : x * eta
      );
      console.log(`| ${r} | ${tau0} | 128 | ${q.join(", ")} |`);
    }
  }
}

async function block() {
  const grid: Spec[] = [];
  for (const r_scale of quick ? [20] : [5, 20]) {
    for (const tau0 of quick ? [0.5] : [0.01, 1.5]) {
      for (const lambda_scale of quick ? [1] : [0.01, 1]) {
        for (const eta1 of quick ? [20] : [40]) {
          grid.push({ r_scale, tau0, lambda_scale, eta1 });
        }
      }
    }
  }
  if (!quick) grid.push({ r_scale: 20, tau0: 1.5, lambda_scale: 1, eta1: 40, m: 1024 });
  console.log(
    "| r | τ0 | λ_scale | η1 | m | η-time | Q-only loss, noise | Q-only loss, no noise | blocked |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const g of grid) {
    const steps = 500;
    const pair = [1, 0].map((xi_scale) => ({
      experiment: "large-lr",
      replicas: 3,
      steps,
      every: 100,
      backend: "wasm",
      params: {
        algo: "large-then-small",
        anneal: "step",
        anneal_step: steps,
        d: 64,
        m: 256,
        n_test: 200,
        ...g,
        xi_scale,
      },
    }));
    const [noisy, clean] = await Promise.all(pair.map((s, i) => runOne({ label: `${i}`, ...s })));
    const qn = mean(noisy.final.train_loss_q_only), qc = mean(clean.final.train_loss_q_only);
    const r = ((g.r_scale as number) * 64 ** -0.75).toFixed(2);
    console.log(
      `| ${r} | ${g.tau0} | ${g.lambda_scale} | ${g.eta1} | ${g.m ?? 256} | ${
        steps * (g.eta1 as number)
      } | ${qn.toFixed(3)} | ${qc.toFixed(3)} | ${qn > qc + 0.02 ? "yes" : "no"} |`,
    );
  }
}

async function labelNoise() {
  console.log("| r | η | δ | Q-only train loss | P-only test error | p_alignment |");
  console.log("|---|---|---|---|---|---|");
  for (const r_scale of [20]) {
    for (const eta2 of [0.2, 2]) {
      for (const delta of quick ? [0, 0.1] : [0, 0.02, 0.1, 0.3]) {
        const steps = Math.round(4000 / eta2);
        const r = await runOne({
          label: "ln",
          experiment: "label-noise-anneal",
          replicas: 3,
          steps: Math.min(steps, 20000),
          every: 1000,
          backend: "wasm",
          params: { algo: "lnsgd-s", d: 64, m: 256, n_test: 200, r_scale, eta2, delta, tau0: 0.01 },
        });
        console.log(
          `| ${(r_scale * 64 ** -0.75).toFixed(2)} | ${eta2} | ${delta} | ${
            mean(r.final.train_loss_q_only).toFixed(3)
          } | ${mean(r.final.test_error_p_only).toFixed(3)} | ${
            mean(r.final.p_alignment).toFixed(3)
          } |`,
        );
      }
    }
  }
}

async function defaults() {
  const rows: [string, string, number][] = [
    ["large-lr", "large-then-small", 3000],
    ["large-lr", "small", 3000],
    ["large-lr", "small-preact-noise", 3000],
    ["label-noise-anneal", "lnsgd-ls", 20000],
    ["label-noise-anneal", "lnsgd-s", 20000],
    ["label-noise-anneal", "fbgd-ls", 20000],
  ];
  // --only=a,b: a subset of the rows (full-batch FBGD-LS used to be left out for its cost).
  const only = Deno.args.find((x) => x.startsWith("--only="))?.slice(7).split(",");
  console.log(
    "| experiment | algo | anneal steps | median p_alignment at anneal | P-only test error at anneal | mean Q-only train loss at anneal | final P-only test error | final Q-only test error | final train loss | final p_alignment | floor notes | seconds |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const [experiment, algo, steps] of rows) {
    if (only && !only.includes(algo)) continue;
    const r = await runOne({
      label: algo,
      experiment,
      replicas: 5,
      steps: quick ? steps / 10 : steps,
      every: steps / 20,
      backend: "wasm",
      params: { algo },
    });
    // Mean ± sample std (n − 1) over the seeds, as pq_sweep.ts and the docs' tables give it.
    const f = (k: string) => {
      const xs = r.final[k] ?? [];
      const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
      return `${mean(xs).toFixed(3)} ± ${sd.toFixed(3)}`;
    };
    console.log(
      `| ${experiment} | ${algo} | ${r.final.anneal_step.join(", ")} | ${
        median(r.final.p_alignment_at_anneal ?? []).toFixed(3)
      } | ${f("test_error_p_only_at_anneal")} | ${f("train_loss_q_only_at_anneal")} | ${
        f("test_error_p_only")
      } | ${f("test_error_q_only")} | ${f("train_loss")} | ${f("p_alignment")} | ${r.notes} | ${
        r.seconds.toFixed(0)
      } |`,
    );
  }
}

const which = Deno.args.find((a) => !a.startsWith("--"));
const runs: Record<string, () => Promise<void>> = {
  race,
  racewide: raceWide,
  qrace,
  block,
  labelnoise: labelNoise,
  defaults,
};
if (!which || !runs[which]) {
  console.error(
    "usage: deno run -A test/sweeps/pq_regime.ts race|racewide|qrace|block|labelnoise|defaults [--quick] [--only=ALGO,...]",
  );
  Deno.exit(2);
}
await runs[which]();
