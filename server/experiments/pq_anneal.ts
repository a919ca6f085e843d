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

export function annealEvent(
  replica: number,
  step: number,
  loss: number,
  threshold: number,
): RunEvent {
  return {
    type: "phase_change",
    step,
    phase: "anneal",
    replica,
    detail: `replica ${replica}: train_loss ${loss.toPrecision(5)} ≤ q·log 2 + ε1 = ${
      threshold.toPrecision(5)
    }, lr η1 → η2`,
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
