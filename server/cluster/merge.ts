/**
 * Merges the record sequences of a run's shards (docs/protocol.md, "Several boxes") into the
 * one sequence the run's log and stream carry, as a PURE function of the shards' sequences:
 * however the shards' records arrive (interleaved, duplicated, redelivered, after a worker
 * died and another resumed its shard), the merged sequence of snapshots, events and frames is
 * the same. That is what makes a coordinator restart exact: it replays each shard's records
 * from seq 1 and the run's recorder drops the merged records its log already holds
 * (RunRecorder.resumeAfter), so nothing is lost and nothing is stored twice.
 *
 * The rule. A shard's snapshots and frames are its "collective" records: the k-th of every
 * shard describe the same step (and frame name), and merge into one record with the values
 * concatenated in shard (= replica) order. Round k emits every shard's events between its
 * (k-1)-th and k-th collective record, then the merged k-th collective record. Events with a
 * `replica` get the shard's first replica added; events without one (planned learning-rate
 * changes, identical in every shard) are emitted once; the round's events are ordered as one
 * session and the driver order them (eventOrder, server/engine/shard_merge.ts), so the merged
 * run's records equal the one-box run's. Only MERGEABLE_EXPERIMENTS are sharded. Statuses are not merged
 * records: the coordinator writes the run's own (running, then the outcome) from what the
 * shards report (see `outcome`).
 */
import type { BodyRecord, FrameRecord, SnapshotRecord } from "../runs/records.ts";
import type { Unsequenced } from "../runs/recorder.ts";
import type { RunEvent } from "../experiments/types.ts";
import { concatRows, eventOrder } from "../engine/shard_merge.ts";

export interface ShardRange {
  first: number;
  count: number;
}

export type MergedRecord = Unsequenced<BodyRecord>;

/** How a run's shards ended: decided once, from their status records. */
export interface MergeOutcome {
  status: "finished" | "failed" | "stopped";
  error?: string;
}

interface ShardState {
  range: ShardRange;
  /** Seq of the next record to move into `ready` (records arrive in any order, with repeats). */
  next: number;
  pending: Map<number, BodyRecord>;
  /** Contiguous records not merged yet, in seq order. */
  ready: BodyRecord[];
  /** Seq of the last record taken out of `ready` (merged, or absorbed as a status). */
  mergedThrough: number;
  finished: boolean;
}

type Collective = SnapshotRecord | FrameRecord;

export class ShardMerger {
  #shards: ShardState[];
  /** Shard whose events of the current round are being emitted. */
  #cursor = 0;
  #collected: Collective[] = [];
  /** Replica-less events already emitted (by content): they are emitted once. */
  #globalEvents = new Set<string>();
  /** Replicas of the whole run reported diverged: when all have, the run fails, as on one box. */
  #diverged = new Set<number>();
  readonly #replicas: number;
  /** Step of the last merged snapshot or frame. */
  #step = 0;
  /** The current round's events, from every shard, until the round closes. */
  #roundEvents: { time: number; event: RunEvent }[] = [];
  #outcome?: MergeOutcome;

  constructor(readonly plan: readonly ShardRange[]) {
    if (plan.length === 0) throw new Error("a run has at least one shard");
    this.#replicas = plan.reduce((n, s) => n + s.count, 0);
    this.#shards = plan.map((range) => ({
      range,
      next: 1,
      pending: new Map(),
      ready: [],
      mergedThrough: 0,
      finished: false,
    }));
  }

  /** Set once the run's shards have all ended, or one failed or stopped. */
  get outcome(): MergeOutcome | undefined {
    return this.#outcome;
  }

  /** Seq up to which shard `i`'s records are in the merged sequence (acknowledge those). */
  mergedThrough(shard: number): number {
    return this.#shards[shard].mergedThrough;
  }

  /**
   * Takes one record of shard `shard` (its own seq, ≥ 1). Returns false for a record seen
   * before (a redelivery, or a resumed job re-publishing records after its checkpoint).
   */
  add(shard: number, record: BodyRecord): boolean {
    const s = this.#shards[shard];
    if (!s) throw new Error(`shard ${shard} is not in the run's plan (${this.plan.length} shards)`);
    const seq = record.seq;
    if (!Number.isInteger(seq) || seq < s.next || s.pending.has(seq)) return false;
    s.pending.set(seq, record);
    while (s.pending.has(s.next)) {
      s.ready.push(s.pending.get(s.next)!);
      s.pending.delete(s.next);
      s.next++;
    }
    return true;
  }

  /** The merged records that follow from what has arrived, in order (empty: wait for more). */
  drain(): MergedRecord[] {
    const out: MergedRecord[] = [];
    while (!this.#outcome) {
      if (this.#cursor < this.#shards.length) {
        if (!this.#advanceShard(this.#shards[this.#cursor], out)) break;
        continue;
      }
      this.#closeRound(out);
    }
    return out;
  }

  /** Emits the cursor shard's events up to its next collective record; false: wait. */
  #advanceShard(s: ShardState, out: MergedRecord[]): boolean {
    const index = this.#cursor;
    if (s.finished) {
      this.#cursor++;
      return true;
    }
    while (s.ready.length > 0) {
      const r = s.ready.shift()!;
      s.mergedThrough = r.seq;
      if (r.type === "snapshot" || r.type === "frame") {
        this.#collected[index] = r;
        this.#cursor++;
        return true;
      }
      if (r.type === "event") {
        const event = this.#globalEvent(r.event, s.range);
        if (event) this.#roundEvents.push({ time: r.time, event });
      } else if (r.type === "status") {
        if (r.status === "finished") {
          s.finished = true;
          this.#cursor++;
          return true;
        }
        if (r.status === "failed" || r.status === "stopped") {
          this.#flushEvents(out);
          this.#outcome = {
            status: r.status,
            error: `shard ${index} (${replicasText(s.range)}) ${r.status}${
              r.error ? `: ${r.error}` : ""
            }`,
          };
          return false;
        }
        // queued, running, interrupted: the shard goes on (a job redelivered after a stop).
      }
      // annotations belong to the run, not to a shard: none are expected, none are kept.
    }
    return false;
  }

  #globalEvent(event: RunEvent, range: ShardRange): RunEvent | undefined {
    if ("replica" in event && typeof event.replica === "number") {
      return { ...event, replica: event.replica + range.first };
    }
    const key = JSON.stringify(event);
    if (this.#globalEvents.has(key)) return undefined;
    this.#globalEvents.add(key);
    return event;
  }

  /** The round's events, in the order one session and the driver give them. */
  #flushEvents(out: MergedRecord[]): void {
    const events = this.#roundEvents.sort((a, b) => eventOrder(a.event, b.event));
    this.#roundEvents = [];
    for (const { time, event } of events) {
      out.push({ type: "event", time, event });
      if (event.type === "replica_diverged") this.#diverged.add(event.replica);
    }
  }

  /** Every shard reached its collective record of this round (or ended): merge it. */
  #closeRound(out: MergedRecord[]): void {
    this.#flushEvents(out);
    const collected = this.#collected;
    this.#collected = [];
    this.#cursor = 0;
    const present = collected.filter((r) => r !== undefined).length;
    if (present === 0) {
      if (!this.#failIfAllDiverged(this.#step)) {
        this.#outcome = { status: "finished" };
      }
      return;
    }
    const first = this.#shards.findIndex((_, i) => collected[i] !== undefined);
    const a = collected[first];
    const mismatch = this.#shards.findIndex((_, i) => {
      const b = collected[i];
      return !b || b.type !== a.type || b.step !== a.step ||
        (a.type === "frame" && b.type === "frame" && (a.name !== b.name || a.width !== b.width));
    });
    if (mismatch >= 0) {
      const b = collected[mismatch];
      this.#outcome = {
        status: "failed",
        error:
          `shards disagree: shard ${first} reported a ${a.type} at step ${a.step}, shard ${mismatch} ${
            b ? `a ${b.type} at step ${b.step}` : "had ended"
          }`,
      };
      return;
    }
    if (a.type === "snapshot") {
      const snaps = collected as SnapshotRecord[];
      const metrics: Record<string, Float32Array> = {};
      for (const name of Object.keys(a.metrics)) {
        metrics[name] = concatRows(snaps.map((r) => r.metrics[name]));
      }
      out.push({
        type: "snapshot",
        step: a.step,
        wall_ms: Math.max(...snaps.map((r) => r.wall_ms)),
        time: Math.max(...snaps.map((r) => r.time)),
        metrics,
      });
    } else {
      const frames = collected as FrameRecord[];
      out.push({
        type: "frame",
        step: a.step,
        time: Math.max(...frames.map((r) => r.time)),
        name: a.name,
        width: a.width,
        values: concatRows(frames.map((r) => r.values)),
      });
    }
    this.#step = a.step;
    this.#failIfAllDiverged(a.step);
  }

  /**
   * The whole run fails once every replica diverged, as a run on one box does (its shards do
   * not: a shard's replicas all diverging leaves the others going, see DriveOptions.shard).
   */
  #failIfAllDiverged(step: number): boolean {
    if (this.#diverged.size < this.#replicas) return false;
    this.#outcome = {
      status: "failed",
      error: `all ${this.#replicas} replicas diverged to a non-finite state (by step ${step}); ` +
        "lower the learning rate or the noise",
    };
    return true;
  }
}

/** "replicas 4–7", or "replica 4" for a shard of one. */
export function replicasText(range: ShardRange): string {
  const last = range.first + range.count - 1;
  return last === range.first ? `replica ${last}` : `replicas ${range.first}–${last}`;
}
