/**
 * The race diagnostics of the P/Q experiments (issue 14, item 3): the η-time Σ_{s<t} γ_s of
 * each replica and the first snapshot at which each block's loss — the P-only training loss
 * for the P block (W), the Q-only training loss for the Q block (V) — falls to `race_loss`,
 * as a step and as an η-time. The papers' mechanism needs the small LR to win the race for Q
 * (memorise Q before P) and the large LR to lose it; every backend feeds the same snapshots,
 * so the crossings are at snapshot resolution (`every`) everywhere.
 */
import type { ParamSchema } from "./schema.ts";

export const raceParams: ParamSchema = {
  race_loss: {
    kind: "number",
    default: 0.35,
    min: 0,
    max: 10,
    doc: "loss level of the race metrics: when the P-only and the Q-only training loss reach it",
    source:
      "issue 14's race measurements (η-time to loss 0.35); chosen about halfway between log 2 (unlearned) and 0",
  },
};

export const RACE_METRICS = [
  {
    name: "eta_time",
    doc: "η-time Σ_{s<t} γ_s of this replica's updates (frozen at its stop)",
    scale: "linear" as const,
  },
  ...(["p", "q"] as const).flatMap((b) => {
    const what = b === "p" ? "P-only" : "Q-only";
    return [
      {
        name: `race_${b}_step`,
        doc: `first snapshot step with ${what} training loss ≤ race_loss (−1: not yet)`,
        scale: "linear" as const,
        smooth: false,
      },
      {
        name: `race_${b}_eta_time`,
        doc: `η-time at race_${b}_step (−1: not yet)`,
        scale: "linear" as const,
        smooth: false,
      },
    ];
  }),
];

/** Σ_{s<t} γ_s: η1 before the anneal (annealing algorithms), η2 after it or throughout. */
export function etaTime(
  t: number,
  annealing: boolean,
  annealedAt: number,
  stoppedAt: number,
  eta1: number,
  eta2: number,
): number {
  const u = stoppedAt >= 0 ? Math.min(t, stoppedAt) : t;
  if (!annealing) return eta2 * u;
  if (annealedAt < 0 || u <= annealedAt) return eta1 * u;
  return eta1 * annealedAt + eta2 * (u - annealedAt);
}

export class RaceWatch {
  private readonly first: { step: number; eta: number }[][];

  constructor(
    private readonly run: {
      replicas: number;
      annealing: boolean;
      eta1: Float64Array;
      eta2: Float64Array;
      level: number;
    },
  ) {
    this.first = Array.from({ length: run.replicas }, () => [
      { step: -1, eta: -1 },
      { step: -1, eta: -1 },
    ]);
  }

  /** Adds eta_time and the race metrics of replica r at snapshot `step` to its values. */
  observe(
    values: Record<string, number>,
    r: number,
    step: number,
    annealedAt: number,
    stoppedAt: number,
  ): void {
    const { annealing, eta1, eta2, level } = this.run;
    const eta = etaTime(step, annealing, annealedAt, stoppedAt, eta1[r], eta2[r]);
    values.eta_time = eta;
    (["p", "q"] as const).forEach((b, i) => {
      const first = this.first[r][i];
      const loss = values[b === "p" ? "train_loss_p_only" : "train_loss_q_only"];
      if (first.step < 0 && loss <= level) Object.assign(first, { step, eta });
      values[`race_${b}_step`] = first.step;
      values[`race_${b}_eta_time`] = first.eta;
    });
  }

  /** The first crossings, [R × 4]: P step, P η-time, Q step, Q η-time (−1: not yet). */
  save(): Float64Array {
    return Float64Array.from(this.first.flat().flatMap((c) => [c.step, c.eta]));
  }

  /** Sets the first crossings from save()'s layout (a checkpoint's `race` array). */
  load(saved: ArrayLike<number>): void {
    this.first.forEach((blocks, r) =>
      blocks.forEach((c, i) => {
        c.step = saved[4 * r + 2 * i];
        c.eta = saved[4 * r + 2 * i + 1];
      })
    );
  }
}
