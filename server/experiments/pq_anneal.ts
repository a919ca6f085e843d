/**
 * The learning-rate anneal shared by `large-lr` and `label-noise-anneal`: η1 until either a
 * fixed step or the first check at which the clean training loss is ≤ q·log 2 + ε1
 * (Algorithm 1 of seed-001; LNSGD-LS/FBGD-LS of seed-000), then η2. The loss rule is a
 * data-dependent event, so each replica anneals on its own and the session reports it.
 *
 * Timing (every backend follows it): at the start of update t (weights U_t) the replica
 * checks; if it anneals there, update t already uses η2, the activation pattern of U_t is
 * stored for the flips metric, and the event carries step t. The loss rule checks at every
 * t with t % check_every == 0 (t = 0 included); the step rule anneals at t = anneal_step.
 */
import type { ParamSchema } from "./schema.ts";
import type { RunEvent } from "./types.ts";

export type AnnealRule = "loss" | "step";

export function annealParams(defaults: {
  eta1: number;
  eta2: number;
  epsilon1: number;
  annealStep: number;
  annealRule: AnnealRule;
  annealAlgos: string[];
  source: string;
  /** Extra doc for η1, and the algorithms it affects if more than the annealing ones. */
  eta1Doc?: string;
  eta1AppliesTo?: string[];
}): ParamSchema {
  return {
    eta1: {
      kind: "number",
      default: defaults.eta1,
      min: 0,
      max: 1e4,
      perReplica: true,
      log: true,
      doc: `large learning rate η1 (before the anneal)${defaults.eta1Doc ?? ""}`,
      source: defaults.source,
      appliesTo: defaults.eta1AppliesTo ?? defaults.annealAlgos,
    },
    eta2: {
      kind: "number",
      default: defaults.eta2,
      min: 0,
      max: 1e4,
      perReplica: true,
      log: true,
      doc: "small learning rate η2 (after the anneal, or throughout for the small-LR algorithms)",
      source: defaults.source,
    },
    anneal: {
      kind: "enum",
      values: ["loss", "step"],
      default: defaults.annealRule,
      doc: "when η1 becomes η2",
      valueDocs: {
        loss: "when the clean training loss first falls to q·log 2 + ε1 (the theory's rule)",
        step: "at anneal_step (the papers' CIFAR experiments)",
      },
      source: "seed-001 Algorithm 1; seed-000 §3.1",
      appliesTo: defaults.annealAlgos,
    },
    epsilon1: {
      kind: "number",
      default: defaults.epsilon1,
      min: 0,
      max: 10,
      log: true,
      doc: "ε1 of the loss threshold q·log 2 + ε1 (q: the empirical Q-only fraction)",
      source: `${defaults.source}; the theory's window for ε1 is empty at simulable d`,
      appliesTo: defaults.annealAlgos,
    },
    anneal_step: {
      kind: "int",
      default: defaults.annealStep,
      min: 0,
      max: 1e10,
      doc:
        "anneal step for anneal=step; also where algorithms without an anneal take the reference activation pattern of activation_flips",
      source: defaults.source,
    },
  };
}

/** Whether a replica that has not annealed yet anneals at the start of update t. */
export function shouldAnneal(
  rule: AnnealRule,
  t: number,
  annealStep: number,
  checkEvery: number,
  loss: () => number,
  threshold: number,
): boolean {
  if (rule === "step") return t === annealStep;
  return t % checkEvery === 0 && loss() <= threshold;
}

/**
 * The loss-rule anneal of one replica. In a shard (RunSpec.firstReplica) `replica` stays the
 * shard's index and the text names the whole run's (firstReplica + replica), as in every event
 * helper here, so merged shards read as the one-box run.
 */
export function annealEvent(
  replica: number,
  step: number,
  loss: number,
  threshold: number,
  firstReplica = 0,
): RunEvent {
  return {
    type: "phase_change",
    step,
    phase: "anneal",
    replica,
    detail: `replica ${firstReplica + replica}: train_loss ${
      loss.toPrecision(5)
    } ≤ q·log 2 + ε1 = ${threshold.toPrecision(5)}, lr η1 → η2`,
  };
}

/** The planned event of the step rule (all replicas anneal together). */
export function plannedAnnealEvent(step: number): RunEvent {
  return { type: "phase_change", step, phase: "anneal", detail: "all replicas: lr η1 → η2" };
}

export const ANNEAL_METRICS = [
  {
    name: "lr",
    doc: "learning rate of the latest update (η1 before the anneal, η2 after)",
    scale: "log" as const,
    smooth: false,
  },
  {
    name: "anneal_step",
    doc: "step at which this replica annealed (−1: not yet, or never for this algorithm)",
    scale: "linear" as const,
    smooth: false,
  },
];

// ---------------------------------------------------------------------------------------
// The theory's stopping rule (seed-001 Algorithms 1–2, Thms 3.4–3.5; seed-000 §3.1): the
// annealing algorithms stop once the clean training loss is ≤ ε2 = √(ε1/q) after the anneal,
// the others once it is ≤ ε′2 = stop_scale·ε2 (seed-001: ε′2 ∈ (d^(−c), ε2]; seed-000:
// ε′2 = O(ε2)). A stopped replica is frozen: no further update, no noise, no decay. The check
// runs where the anneal check runs (every step for full-batch algorithms, every
// anneal_check_every steps for SGD), after it, on the same loss; a replica that stops at t
// keeps U_t.

export type StopRule = "off" | "loss";

export function stopParams(defaults: { stopAlgos: string[]; checkDoc?: string }): ParamSchema {
  return {
    stop: {
      kind: "enum",
      values: ["off", "loss"],
      default: "off",
      doc: "the theory's stopping rule: freeze a replica once its clean training loss reaches ε2",
      valueDocs: {
        off: "train for the run's steps (the papers' CIFAR experiments)",
        loss:
          "stop at L̂ ≤ ε2 = √(ε1/q) after the anneal, or at L̂ ≤ ε′2 = stop_scale·ε2 without one",
      },
      source: "seed-001 Algorithms 1–2 (ε2 = √(ε1/q), ε′2 ≤ ε2); seed-000 §3.1 (ε′2 = O(ε2))",
      appliesTo: defaults.stopAlgos,
    },
    stop_scale: {
      kind: "number",
      default: 1,
      min: 0,
      max: 1,
      doc: "ε′2 = stop_scale·ε2 for the algorithms without an anneal (1: the largest allowed)",
      source: "seed-001 Thm 3.5 (ε′2 ∈ (d^(−c), ε2]); chosen as ε2 so both stop at one loss",
      appliesTo: defaults.stopAlgos,
    },
  };
}

/** The stop loss of one replica: √(ε1/q) (·stop_scale without an anneal); −1: never. */
export function stopThreshold(
  rule: StopRule,
  q: number,
  eps1: number,
  annealing: boolean,
  stopScale: number,
): number {
  if (rule === "off") return -1;
  return (annealing ? 1 : stopScale) * Math.sqrt(eps1 / q);
}

/** Whether a replica that has not stopped yet stops at update t (before updating). */
export function shouldStop(
  threshold: number,
  eligible: boolean,
  t: number,
  checkEvery: number,
  loss: () => number,
): boolean {
  return threshold >= 0 && eligible && t % checkEvery === 0 && loss() <= threshold;
}

/** The metrics that the anneal and the stop record (events and the *_at_anneal/_at_stop metrics). */
export const PHASE_KEYS = [
  "train_loss",
  "train_loss_q_only",
  "test_error",
  "test_error_p_only",
  "p_alignment",
  "q_second_diff",
] as const;

/** Where a replica's anneal and stop happened and the metrics it had there. */
export interface PhaseState {
  /** Step of the anneal, −1 before it. */
  annealedAt: number;
  /** Step of the stop, −1 before it. */
  stoppedAt: number;
  atAnneal: Record<string, number> | null;
  atStop: Record<string, number> | null;
}

export function initialPhase(): PhaseState {
  return { annealedAt: -1, stoppedAt: -1, atAnneal: null, atStop: null };
}

function phaseValues(values: Record<string, number>): string {
  return PHASE_KEYS.map((k) => `${k} ${values[k].toPrecision(4)}`).join(", ");
}

/** The event of a replica's stop, with the metrics at U_t. */
export function stopEvent(
  replica: number,
  step: number,
  loss: number,
  threshold: number,
  values: Record<string, number>,
  firstReplica = 0,
): RunEvent {
  return {
    type: "phase_change",
    step,
    phase: "stop",
    replica,
    detail: `replica ${firstReplica + replica}: train_loss ${loss.toPrecision(5)} ≤ ε2 = ${
      threshold.toPrecision(5)
    }, stopped; ${phaseValues(values)}`,
  };
}

/** The metrics a replica had at its anneal, as a note beside the anneal event. */
export function annealValuesEvent(
  replica: number,
  step: number,
  values: Record<string, number>,
  firstReplica = 0,
): RunEvent {
  return {
    type: "note",
    step,
    detail: `replica ${firstReplica + replica} at the anneal: ${phaseValues(values)}`,
  };
}

/** Adds stop_step and the *_at_anneal / *_at_stop metrics (NaN until they happen). */
export function phaseMetrics(out: Record<string, number>, phase: PhaseState): void {
  out.stop_step = phase.stoppedAt;
  for (const k of PHASE_KEYS) {
    out[`${k}_at_anneal`] = phase.atAnneal ? phase.atAnneal[k] : NaN;
    out[`${k}_at_stop`] = phase.atStop ? phase.atStop[k] : NaN;
  }
}

export const PHASE_METRICS = [
  {
    name: "stop_step",
    doc: "step at which this replica stopped by the stopping rule (−1: not yet, or stop=off)",
    scale: "linear" as const,
    smooth: false,
  },
  ...PHASE_KEYS.flatMap((k) => [
    {
      name: `${k}_at_anneal`,
      doc: `${k} at the weights U_t of this replica's anneal step (NaN before it)`,
      scale: "linear" as const,
      smooth: false,
    },
    {
      name: `${k}_at_stop`,
      doc: `${k} at the weights of this replica's stop (NaN before it)`,
      scale: "linear" as const,
      smooth: false,
    },
  ]),
];
