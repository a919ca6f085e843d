/**
 * The figures of issue 14's regime search (docs/experiments/large-lr.md and
 * label-noise-anneal.md, "What the lab measured"): real runs on a fresh lab, posted through
 * the API and shown on the dashboard in headless Chromium. Not a test: the pictures go to
 * docs/img/. `--quick` shortens every run (a smoke check of the script, not the docs' figures).
 *   deno run -A test/screenshot_pq_search.ts [--out=docs/img] [--quick] [--only=NAME,...]
 *
 * Figures (each caption in the docs gives the settings written here):
 *   pq-race-r05.png, pq-race-r088.png  the race (table 3 / 3c): P-only and Q-only training
 *       loss against step, one run per d, both blocks at one LR η = 10, no noise or decay.
 *   large-lr-noise-pairs-helps.png, -blocks.png, large-lr-noise-pairs.png  noise-blocking of
 *       Q (table 4): `noise_pairs=on` at two of its settings, the Q-only training loss of the
 *       noisy replicas and of their noise-free twins over time (one run each), and at the
 *       end on the sweep view (noise on / off, one line per run).
 *   label-noise-blocking.png, -eta02.png  the label-noise analogue (table 3 there): LNSGD at
 *       one η (2, then 0.2), δ = 0.1 against δ = 0 to η-time 4,000 (two runs each, same
 *       seeds: same data, initialisation and SGD indices).
 *   large-lr-defaults.png, label-noise-anneal-defaults.png  the three algorithms of each
 *       experiment at the defaults, 5 seeds: p_alignment and the P-only test error around the
 *       anneal (table 2).
 */
import { chromium, type Page } from "playwright-core";
import { parseCliArgs } from "../server/cli/args.ts";
import { startTestLab } from "./lab_harness.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./browser_harness.ts";

const { flags } = parseCliArgs(Deno.args);
const outDir = typeof flags.get("out") === "string" ? String(flags.get("out")) : "docs/img";
const quick = flags.has("quick");
const only = typeof flags.get("only") === "string" ? String(flags.get("only")).split(",") : null;
await Deno.mkdir(outDir, { recursive: true });

type Spec = Record<string, unknown> & { params: Record<string, unknown> };
/** Shortens a run for --quick (a tenth of the steps, the snapshots kept ≈ as many). */
const steps = (n: number) => quick ? Math.max(20, Math.round(n / 10)) : n;

const lab = await startTestLab();
const base = `http://127.0.0.1:${lab.port}`;
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });

async function post(spec: Spec): Promise<string> {
  const res = await fetch(`${base}/api/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(spec),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`${spec.name}: ${JSON.stringify(body)}`);
  return body.id;
}

async function finished(ids: string[]): Promise<void> {
  for (const id of ids) {
    for (;;) {
      const run = await (await fetch(`${base}/api/runs/${id}`)).json();
      if (run.status === "finished") break;
      if (run.status === "failed") throw new Error(run.error);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/**
 * Opens the run view of `ids` with `query`, waits until every shown chart has drawn every
 * run's last snapshot, and screenshots the chart cards of `metrics` together (their union
 * box), or the sweep card.
 */
async function shoot(
  page: Page,
  ids: string[],
  query: string,
  metrics: string[],
  file: string,
  sweep = false,
): Promise<void> {
  await page.goto(
    `${base}/?runs=${ids.join(",")}&theme=light&smooth=0&metrics=${metrics.join(",")}&${query}`,
  );
  // Every run shown has streamed to its last step, and every chart asked for exists.
  await page.waitForFunction(
    `(() => { const l = globalThis.__lab; if (!l) return false;
      const runs = l.runs().filter((r) => r.shown);
      return runs.length === ${ids.length} && runs.every((r) => r.step === r.steps) &&
        ${JSON.stringify(metrics)}.every((m) => l.chart(m) !== null); })()`,
    null,
    { timeout: 120_000 },
  );
  await page.waitForTimeout(1500); // the last frames draw
  const cards = sweep
    ? [page.locator(".sweep-card")]
    : metrics.map((m) => page.locator(`.chart-card[data-metric="${m}"]`));
  const boxes = await Promise.all(cards.map((c) => c.boundingBox()));
  const x0 = Math.min(...boxes.map((b) => b!.x)), y0 = Math.min(...boxes.map((b) => b!.y));
  const x1 = Math.max(...boxes.map((b) => b!.x + b!.width));
  const y1 = Math.max(...boxes.map((b) => b!.y + b!.height));
  const path = `${outDir}/${file}`;
  await page.screenshot({
    path,
    fullPage: true,
    clip: { x: x0, y: y0, width: x1 - x0, height: y1 - y0 },
  });
  console.log(`${path}  (${Math.round((await Deno.stat(path)).size / 1024)} KB)`);
}

/** The race (pq_regime.ts race / racewide): one run per d, both blocks at one LR. */
function raceSpecs(r: number, tau0: number): Spec[] {
  return [64, 128, 256, 512].map((d) => ({
    name: `d=${d}`,
    experiment: "large-lr",
    replicas: 3,
    steps: steps(820),
    every: 10,
    backend: "wasm",
    params: {
      algo: "small",
      d,
      m: 64,
      m_p: 16,
      m_q: 64,
      r_scale: r * d ** 0.75,
      tau0,
      xi_scale: 0,
      lambda_scale: 0,
      eta2: 10,
      q0: 0.6,
      n_test: 200,
    },
  }));
}

/**
 * Prints what the figure shows as numbers, from the rows the dashboard received: per run,
 * each metric's per-replica values at the first and the last snapshot (for the captions).
 */
async function printRows(page: Page, ids: string[], metrics: string[]): Promise<void> {
  for (const id of ids) {
    const info = await page.evaluate(
      ([id, metrics]) => {
        // deno-lint-ignore no-explicit-any
        const l = (globalThis as any).__lab;
        const s = l.streamed(id);
        const label = l.runs().find((r: { id: string }) => r.id === id)?.label;
        const at = (i: number) =>
          Object.fromEntries(
            (metrics as string[]).map((m) => [
              m,
              s.metrics[m]?.[i]?.map((v: number) =>
                Number.isInteger(v) ? v : Number(v.toPrecision(3))
              ),
            ]),
          );
        return {
          label,
          first: [s.steps[0], at(0)],
          last: [s.steps.at(-1), at(s.steps.length - 1)],
        };
      },
      [id, metrics] as const,
    );
    console.log(`  ${info.label}: step ${info.first[0]} ${JSON.stringify(info.first[1])}`);
    console.log(
      `  ${" ".repeat(info.label.length)}  step ${info.last[0]} ${JSON.stringify(info.last[1])}`,
    );
  }
}

/** Posts `specs`, waits for them, and shoots their charts of `metrics`. */
async function runAndShoot(
  page: Page,
  specs: Spec[],
  metrics: string[],
  file: string,
  query = "",
  report: string[] = [],
): Promise<string[]> {
  const ids = [];
  for (const s of specs) ids.push(await post(s)); // in order: the colours follow it
  await finished(ids);
  await shoot(page, ids, query, metrics, file);
  await printRows(page, ids, [...metrics, ...report]);
  return ids;
}

const RACE = ["train_loss_p_only", "train_loss_q_only"];
/** The race's own metrics: η-time at which each subset loss first reaches 0.35 (−1: not yet). */
const RACE_AT = ["race_p_eta_time", "race_q_eta_time"];

/** Table 4's pairs, at the setting where the noise lowers Q's loss most and at the one it blocks. */
function noisePairs(name: string, extra: Record<string, unknown>): Spec {
  return {
    name,
    experiment: "large-lr",
    replicas: 6,
    steps: steps(500),
    every: 5,
    backend: "wasm",
    params: {
      algo: "large-then-small",
      anneal: "step",
      anneal_step: steps(500),
      d: 64,
      m: 256,
      n_test: 200,
      eta1: 40,
      noise_pairs: "on",
      ...extra,
    },
  };
}

/**
 * LNSGD at one η throughout (pq_regime.ts labelnoise): δ against δ = 0, same seeds, to
 * η-time 4,000.
 */
function labelNoise(delta: number, eta: number): Spec {
  const n = steps(Math.round(4000 / eta));
  return {
    name: `δ=${delta} η=${eta}`,
    experiment: "label-noise-anneal",
    replicas: 3,
    steps: n,
    every: Math.max(1, Math.round(n / 100)),
    backend: "wasm",
    params: {
      algo: "lnsgd-s",
      d: 64,
      m: 256,
      n_test: 200,
      r_scale: 20,
      eta2: eta,
      delta,
      tau0: 0.01,
    },
  };
}

const DEFAULTS = ["p_alignment", "test_error_p_only", "train_loss_q_only"];

const figures: Record<string, (page: Page) => Promise<void>> = {
  "pq-race-r05": async (page) => {
    await runAndShoot(page, raceSpecs(0.5, 1e-3), RACE, "pq-race-r05.png", "", RACE_AT);
  },
  "pq-race-r088": async (page) => {
    await runAndShoot(page, raceSpecs(0.88, 0.1), RACE, "pq-race-r088.png", "", RACE_AT);
  },
  "large-lr-noise-pairs": async (page) => {
    const helps = noisePairs("τ0=0.01 λ_scale=0.01 m=256", {
      r_scale: 20,
      tau0: 0.01,
      lambda_scale: 0.01,
    });
    const blocks = noisePairs("τ0=1.5 λ_scale=1 m=1024", {
      r_scale: 20,
      tau0: 1.5,
      lambda_scale: 1,
      m: 1024,
    });
    // A run's two halves are drawn as the settings noise=on / noise=off, coloured alike in
    // every run, so each run gets its own time chart; the sweep view compares the two.
    const q = ["train_loss_q_only"];
    const a = await runAndShoot(page, [helps], q, "large-lr-noise-pairs-helps.png");
    const b = await runAndShoot(page, [blocks], q, "large-lr-noise-pairs-blocks.png");
    await shoot(
      page,
      [...a, ...b],
      "sweep=train_loss_q_only&sweep_x=noise",
      q,
      "large-lr-noise-pairs.png",
      true,
    );
  },
  "label-noise-blocking": async (page) => {
    for (
      const [eta, file] of [[2, "label-noise-blocking.png"], [
        0.2,
        "label-noise-blocking-eta02.png",
      ]] as const
    ) {
      await runAndShoot(
        page,
        [labelNoise(0.1, eta), labelNoise(0, eta)],
        ["train_loss_q_only", "p_alignment"],
        file,
      );
    }
  },
  "large-lr-defaults": async (page) => {
    const specs = ["large-then-small", "small", "small-preact-noise"].map((algo) => ({
      name: algo,
      experiment: "large-lr",
      replicas: 5,
      steps: steps(1000),
      every: 5,
      backend: "wasm",
      params: { algo },
    }));
    await runAndShoot(page, specs, DEFAULTS, "large-lr-defaults.png", "xscale=log", [
      "anneal_step",
    ]);
  },
  "label-noise-anneal-defaults": async (page) => {
    const specs = ["lnsgd-ls", "lnsgd-s", "fbgd-ls"].map((algo) => ({
      name: algo,
      experiment: "label-noise-anneal",
      replicas: 5,
      steps: steps(4000),
      every: 20,
      backend: "wasm",
      params: { algo },
    }));
    await runAndShoot(page, specs, DEFAULTS, "label-noise-anneal-defaults.png", "xscale=log", [
      "anneal_step",
    ]);
  },
};

try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  for (const [name, make] of Object.entries(figures)) {
    if (only && !only.includes(name)) continue;
    const t0 = performance.now();
    await make(page);
    console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
} finally {
  await browser.close();
  await lab.close();
}
