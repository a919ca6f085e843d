/**
 * The records of a run, shared by the run log on disk and the WebSocket stream: the log is
 * the stream, written down. Every record after the header carries `seq`, one counter per run
 * that increases by 1 with each record, so a subscriber that saw seq N can ask for exactly
 * what follows. Typed arrays stay typed arrays (msgpackr with moreTypes).
 */
import { Packr, RESET_BUFFER_MODE } from "msgpackr";
import type { RunEvent, RunSpec } from "../experiments/types.ts";
import type { SweepInfo } from "../experiments/sweep.ts";

export const RUNLOG_FORMAT = "lab-runlog";
export const RUNLOG_VERSION = 1;

export type RunStatus = "queued" | "running" | "finished" | "failed" | "stopped" | "interrupted";

export interface HeaderRecord {
  type: "header";
  format: typeof RUNLOG_FORMAT;
  version: number;
  id: string;
  spec: RunSpec;
  code_version: string;
  backend: string;
  adapter: string;
  created: string;
  metrics: string[];
  /** Frame names this run may emit (e.g. "v_sq"). */
  frames: string[];
  /** The replicas' settings when the run is a sweep (grid × seeds; server/experiments/sweep.ts). */
  sweep?: SweepInfo;
  /**
   * Present when the run is computed in shards by the multi-box coordinator
   * (server/cluster/coordinator.ts): the replicas' blocks, in replica order, one job each.
   */
  cluster?: { shards: { first: number; count: number }[] };
}

export interface SnapshotRecord {
  type: "snapshot";
  seq: number;
  step: number;
  /** Milliseconds of compute since the run started. */
  wall_ms: number;
  /** Unix epoch milliseconds when the host received it. */
  time: number;
  metrics: Record<string, Float32Array>;
}

/**
 * Consecutive snapshots in one record, column-wise (written when a call of the kernel produced
 * several in a row, e.g. a run with `every=1`): it holds seqs `seq` … `seq + steps.length − 1`,
 * one per snapshot, exactly the SnapshotRecords it stands for (expandSnapshots). Stored in the
 * log only: readers and the stream see the snapshots one by one.
 */
export interface SnapshotsRecord {
  type: "snapshots";
  seq: number;
  time: number;
  steps: Float64Array;
  wall_ms: Float64Array;
  /** Per metric, [snapshot × replica]: snapshot i's values at [i·R, (i+1)·R). */
  metrics: Record<string, Float32Array>;
}

export type EventRecord = { type: "event"; seq: number; time: number; event: RunEvent };

export interface FrameRecord {
  type: "frame";
  seq: number;
  step: number;
  time: number;
  name: string;
  width: number;
  values: Float32Array;
}

export interface StatusRecord {
  type: "status";
  seq: number;
  time: number;
  status: RunStatus;
  step: number;
  error?: string;
  /**
   * On the `interrupted` status a graceful shutdown writes (the run was checkpointed, not
   * abandoned): the next start resumes the run as it resumes runs a crash left in flight.
   */
  resume_on_start?: true;
}

/**
 * A person renamed, retagged or annotated the run after it started (also after it ended); the
 * latest value of each field wins over the spec's and earlier annotations'.
 */
export interface AnnotationRecord {
  type: "annotation";
  seq: number;
  time: number;
  name?: string;
  tags?: string[];
  note?: string;
}

export type BodyRecord =
  | SnapshotRecord
  | EventRecord
  | FrameRecord
  | StatusRecord
  | AnnotationRecord;
export type RunRecord = HeaderRecord | BodyRecord;
/** What the recorder writes and hands its listeners: body records, snapshots possibly in blocks. */
export type LogRecord = BodyRecord | SnapshotsRecord;

/** Snapshots a record holds: 0, 1, or a block's rows. */
export function snapshotCount(r: LogRecord): number {
  return r.type === "snapshot" ? 1 : r.type === "snapshots" ? r.steps.length : 0;
}

/** Seq of a record's last snapshot (a block spans several seqs; others one). */
export function lastSeqOf(r: LogRecord): number {
  return r.type === "snapshots" ? r.seq + r.steps.length - 1 : r.seq;
}

/** Row `i` of a block as the SnapshotRecord it stands for (its own copies of the values). */
export function blockRow(b: SnapshotsRecord, i: number): SnapshotRecord {
  const metrics: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(b.metrics)) {
    const R = v.length / b.steps.length;
    metrics[name] = v.slice(i * R, (i + 1) * R);
  }
  return {
    type: "snapshot",
    seq: b.seq + i,
    step: b.steps[i],
    wall_ms: b.wall_ms[i],
    time: b.time,
    metrics,
  };
}

/** Rows [from, to) of a block as a block (views, no copy). */
export function sliceBlock(b: SnapshotsRecord, from: number, to = b.steps.length): SnapshotsRecord {
  const n = b.steps.length;
  const metrics: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(b.metrics)) {
    const R = v.length / n;
    metrics[name] = v.subarray(from * R, to * R);
  }
  return {
    type: "snapshots",
    seq: b.seq + from,
    time: b.time,
    steps: b.steps.subarray(from, to),
    wall_ms: b.wall_ms.subarray(from, to),
    metrics,
  };
}

/** Records with every block replaced by the SnapshotRecords it stands for. */
export function expandSnapshots(records: readonly LogRecord[]): BodyRecord[] {
  if (!records.some((r) => r.type === "snapshots")) return records as BodyRecord[];
  const out: BodyRecord[] = [];
  for (const r of records) {
    if (r.type !== "snapshots") out.push(r);
    else for (let i = 0; i < r.steps.length; i++) out.push(blockRow(r, i));
  }
  return out;
}

/** One shared codec: typed arrays round-trip as typed arrays, maps as plain objects. */
// copyBuffers: a decoded binary field is a copy, never a view of the bytes read (the log's
// readers reuse their buffers).
export const packr = new Packr({
  moreTypes: true,
  useRecords: false,
  mapsAsObjects: true,
  copyBuffers: true,
});

export function encodeRecord(record: unknown): Uint8Array {
  return packr.pack(record);
}

/**
 * encodeRecord for a caller that copies the bytes at once (the log writer's framing): they
 * are valid only until the next encode, and msgpackr packs the next record into the same
 * memory instead of moving on through its buffer. An every=1 run encodes tens of MB a second;
 * moving on meant fresh memory (a page fault per 4 KiB) at that rate.
 */
export function encodeRecordTransient(record: unknown): Uint8Array {
  return packr.pack(record, RESET_BUFFER_MODE);
}

export function decodeRecord<T = RunRecord>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}
