/**
 * The warning that a `large-lr` run's weight decay holds the training loss above the
 * threshold it waits for (issue 14, item 1): with gradient noise and decay λ the weights
 * relax to a steady state in ≈ 1/(γλ) steps, and its loss (the floor) can sit above the
 * anneal threshold q·log 2 + ε1 or the stop threshold ε2, so the anneal or the stop never
 * fires (the old defaults at d = 64: floor ≈ 0.57 > 0.47). The floor is measured, not
 * predicted: the a-priori margin bounds from λ (‖U‖_F ≲ 1/λ, Prop. A.3) are orders of
 * magnitude too loose at simulable d to decide anything.
 *
 * Rule, per replica and phase (before the anneal: threshold q·log 2 + ε1 at γ = η1; after it,
 * or throughout without an anneal, with the stopping rule on: ε2 at γ = η2), fed the clean
 * training loss at every snapshot: once the phase has lasted ≥ 3 relaxation times 1/(γλ)
 * and the loss over the last window W = max(1/(γλ), 2·every) steps made no new low
 * (by 1e-3) below the lowest loss before that window, while staying above the threshold, a
 * `note` event says so once, with the floor (the lowest loss of the phase). Every backend
 * feeds it the same snapshots, so the note lands on the same step everywhere.
 */
import type { RunEvent } from "./types.ts";

export interface FloorWatchInput {
  replicas: number;
  every: number;
  /** Whether the algorithm anneals (η1 before the anneal, η2 after). */
  annealing: boolean;
  /** Whether the anneal waits for the loss threshold (the step rule needs no warning). */
  annealByLoss: boolean;
  eta1: Float64Array;
  eta2: Float64Array;
  lambda: Float64Array;
  /** q·log 2 + ε1 per replica. */
  threshold: Float64Array;
  /** ε2 (or ε′2) per replica, −1 when the stopping rule is off. */
  stopAt: Float64Array;
  /** A shard's global index of replica 0: the note's text names the global replica. */
  firstReplica?: number;
}

const NO_NEW_LOW = 1e-3;
const MIN_RELAXATIONS = 3;

interface PhaseTrack {
  phase: "anneal" | "stop";
  start: number;
  points: { step: number; loss: number }[];
  warned: boolean;
}

export class FloorWatch {
  private tracks: (PhaseTrack | null)[];

  constructor(private readonly run: FloorWatchInput) {
    this.tracks = Array.from({ length: run.replicas }, () => null);
  }

  /**
   * One snapshot of replica r: its clean training loss at `step`, the step of its anneal (−1:
   * none yet) and whether it has stopped. Returns the warning when it fires.
   */
  observe(
    step: number,
    r: number,
    loss: number,
    annealedAt: number,
    stopped: boolean,
  ): RunEvent | null {
    const { annealing, stopAt } = this.run;
    const phase = annealing && annealedAt < 0
      ? (this.run.annealByLoss ? "anneal" : null)
      : stopAt[r] >= 0 && !stopped
      ? "stop"
      : null;
    // Step 0 is not fed: the reference session sees snapshots after updates only.
    if (!phase || step === 0 || !Number.isFinite(loss)) return null;
    let track = this.tracks[r];
    if (!track || track.phase !== phase) {
      track = {
        phase,
        start: phase === "stop" && annealing ? annealedAt : 0,
        points: [],
        warned: false,
      };
      this.tracks[r] = track;
    }
    track.points.push({ step, loss });
    if (track.warned) return null;
    const gamma = phase === "anneal" ? this.run.eta1[r] : this.run.eta2[r];
    const relax = 1 / (gamma * this.run.lambda[r]);
    if (!Number.isFinite(relax) || step - track.start < MIN_RELAXATIONS * relax) return null;
    const target = phase === "anneal" ? this.run.threshold[r] : stopAt[r];
    const window = Math.max(relax, 2 * this.run.every);
    let older = Infinity, recent = Infinity;
    for (const p of track.points) {
      if (p.step > step - window) recent = Math.min(recent, p.loss);
      else older = Math.min(older, p.loss);
    }
    if (!Number.isFinite(older) || recent <= target || recent < older - NO_NEW_LOW) return null;
    track.warned = true;
    const floor = Math.min(older, recent);
    const what = phase === "anneal" ? "anneal threshold q·log 2 + ε1" : "stop threshold ε2";
    return {
      type: "note",
      step,
      detail:
        `replica ${(this.run.firstReplica ?? 0) + r}: train_loss has settled at ≈ ${
          floor.toPrecision(4)
        } (no new low ` +
        `in the last ${Math.round(window)} steps, ${
          ((step - track.start) / relax).toFixed(1)
        } relaxation times 1/(γλ) = ${relax.toPrecision(3)} steps) above the ${what} = ${
          target.toPrecision(4)
        }: weight decay λ = ${this.run.lambda[r].toPrecision(3)} holds it there, so the ${
          phase === "anneal" ? "anneal" : "stop"
        } cannot fire (lower lambda_scale or raise ε1)`,
    };
  }

  /**
   * The tracks, for checkpoints: `tracks` [R × 4] (phase: 0 none, 1 anneal, 2 stop; start;
   * warned; number of points) and `points` [Σ points × 2] (step, loss), replica by replica.
   */
  save(): { tracks: Float64Array; points: Float64Array } {
    const tracks = new Float64Array(4 * this.run.replicas);
    const points: number[] = [];
    this.tracks.forEach((t, r) => {
      if (!t) return;
      tracks.set([t.phase === "anneal" ? 1 : 2, t.start, t.warned ? 1 : 0, t.points.length], 4 * r);
      for (const p of t.points) points.push(p.step, p.loss);
    });
    return { tracks, points: Float64Array.from(points) };
  }

  /** Sets the tracks from save()'s layout. */
  load(tracks: ArrayLike<number>, points: ArrayLike<number>): void {
    let at = 0;
    this.tracks = this.tracks.map((_, r) => {
      const [code, start, warned, count] = Array.from({ length: 4 }, (_, i) => tracks[4 * r + i]);
      if (code === 0) return null;
      const track: PhaseTrack = {
        phase: code === 1 ? "anneal" : "stop",
        start,
        points: [],
        warned: warned === 1,
      };
      for (let i = 0; i < count; i++, at += 2) {
        track.points.push({ step: points[at], loss: points[at + 1] });
      }
      return track;
    });
  }
}
