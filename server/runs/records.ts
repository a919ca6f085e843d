/**
 * The records of a run, shared by the run log on disk and the WebSocket stream: the log is
 * the stream, written down. Every record after the header carries `seq`, one counter per run
 * that increases by 1 with each record, so a subscriber that saw seq N can ask for exactly
 * what follows. Typed arrays stay typed arrays (msgpackr with moreTypes).
 */
import { Packr } from "msgpackr";
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

/** One shared codec: typed arrays round-trip as typed arrays, maps as plain objects. */
export const packr = new Packr({ moreTypes: true, useRecords: false, mapsAsObjects: true });

export function encodeRecord(record: unknown): Uint8Array {
  return packr.pack(record);
}

export function decodeRecord<T = RunRecord>(bytes: Uint8Array): T {
  return packr.unpack(bytes) as T;
}
