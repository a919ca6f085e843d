/**
 * Sweep driver for the P/Q experiments (large-lr, label-noise-anneal): runs a list of run
 * specs through the lab's own validator and session (any backend), and prints, per spec,
 * the mean ± std over replicas of the final metrics that decide the papers' ordering, plus
 * the anneal steps. Replicas are independent seeds (data=per-replica is the default).
 *
 *   nice -n 10 deno run -A test/sweeps/pq_sweep.ts SPECS.json [--jsonl=OUT.jsonl]
 *     [--shard=K/S] [--deadline=SECONDS]
 *
 * SPECS.json: [{ "label": "...", "experiment": "large-lr", "params": {...}, "replicas": 5,
 *   "steps": 6000, "every": 500, "backend": "wasm" }, ...]. Not a test: docs/experiments
 * record the sweeps it ran and their output.
 */
import { validateRunSpec } from "../../server/experiments/registry.ts";
import { openSession } from "../../server/engine/open.ts";

const KEY_METRICS = [
  "test_error_p_only",
  "test_error",
  "test_error_q_only",
  "train_loss",
  "train_loss_p_only",
  "train_loss_q_only",
  "q_second_diff",
  "p_alignment",
  "p_alignment_at_anneal",
  "test_error_p_only_at_anneal",
  "train_loss_q_only_at_anneal",
];

export interface SweepResult {
  label: string;
  spec: unknown;
  seconds: number;
  final: Record<string, number[]>;
  /** Key metrics at every snapshot: step → metric → replica values. */
  curves: { step: number; metrics: Record<string, number[]> }[];
  anneals: { step: number; detail?: string }[];
  /** Floor warnings (pq_floor.ts): replicas whose anneal or stop could not fire. */
  notes: number;
}

function median(xs: number[]): number {
  const ok = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!ok.length) return NaN;
  const h = ok.length >> 1;
  return ok.length % 2 ? ok[h] : (ok[h - 1] + ok[h]) / 2;
}

function meanStd(xs: number[]): [number, number] {
  const ok = xs.filter(Number.isFinite);
  if (!ok.length) return [NaN, NaN];
  const mean = ok.reduce((a, b) => a + b, 0) / ok.length;
  const v = ok.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, ok.length - 1);
  return [mean, Math.sqrt(v)];
}

export async function runOne(input: Record<string, unknown>): Promise<SweepResult> {
  const { label, ...body } = input;
  const spec = validateRunSpec(body);
  const session = await openSession(spec);
  const t0 = performance.now();
  const curves: SweepResult["curves"] = [];
  const anneals: SweepResult["anneals"] = [];
  let notes = 0;
  let last: Record<string, Float32Array> = {};
  const chunk = Math.max(spec.every, Math.ceil(spec.steps / 20));
  while (session.step < spec.steps) {
    const res = await session.advance(Math.min(spec.steps, session.step + chunk));
    for (const s of res.snapshots) {
      last = s.metrics;
      const m: Record<string, number[]> = {};
      for (const k of KEY_METRICS) if (s.metrics[k]) m[k] = Array.from(s.metrics[k]);
      curves.push({ step: s.step, metrics: m });
    }
    for (const e of res.events) {
      if (e.type === "note" && e.detail.includes("cannot fire")) notes++;
      if (e.type === "phase_change" || e.type === "replica_diverged") {
        anneals.push({ step: e.step, detail: "detail" in e ? e.detail : `diverged ${e.type}` });
      }
    }
  }
  await session.dispose();
  const final: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(last)) final[k] = Array.from(v);
  return {
    label: String(label ?? ""),
    spec,
    seconds: (performance.now() - t0) / 1000,
    final,
    curves,
    anneals,
    notes,
  };
}

export function summaryLine(r: SweepResult): string {
  const f = (k: string, digits = 3) => {
    const [m, s] = meanStd(r.final[k] ?? []);
    return `${k}=${m.toFixed(digits)}±${s.toFixed(digits)}`;
  };
  const annealSteps = r.final.anneal_step ? r.final.anneal_step.join(",") : "";
  return [
    r.label.padEnd(28),
    f("test_error_p_only"),
    f("test_error_q_only"),
    f("test_error"),
    f("train_loss", 4),
    f("q_second_diff", 4),
    f("p_alignment"),
    `p_alignment_at_anneal(median)=${median(r.final.p_alignment_at_anneal ?? []).toFixed(3)}`,
    f("test_error_p_only_at_anneal"),
    f("train_loss_q_only_at_anneal"),
    `anneal=[${annealSteps}]`,
    `stop=[${(r.final.stop_step ?? []).join(",")}]`,
    `notes=${r.notes}`,
    `${r.seconds.toFixed(0)}s`,
  ].join("  ");
}

if (import.meta.main) {
  const file = Deno.args.find((a) => !a.startsWith("--"));
  if (!file) {
    console.error("usage: deno run -A test/sweeps/pq_sweep.ts SPECS.json [--jsonl=OUT]");
    Deno.exit(2);
  }
  const flag = (name: string) => Deno.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  const out = flag("jsonl");
  // --shard=K/S runs specs K, K+S, K+2S, … (S processes share a sweep); --deadline=SECONDS
  // starts no new spec after that many seconds, so a time-limited machine returns results.
  const [shard, shards] = (flag("shard") ?? "0/1").split("/").map(Number);
  const deadline = Number(flag("deadline") ?? Infinity) * 1000;
  const started = performance.now();
  const specs = JSON.parse(await Deno.readTextFile(file)) as Record<string, unknown>[];
  for (let index = shard; index < specs.length; index += shards) {
    if (performance.now() - started > deadline) break;
    const r = await runOne(specs[index]);
    console.log(summaryLine(r));
    if (out) await Deno.writeTextFile(out, JSON.stringify(r) + "\n", { append: true });
  }
}
