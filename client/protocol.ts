/**
 * The wire format of the lab's stream (`/api/stream`), shared by the server, the subscriber
 * library and the dashboard. docs/protocol.md is the prose version of this file; keep the two
 * in step. Record shapes come from the run log (server/runs/records.ts): a streamed record is
 * the logged record plus the `run` it belongs to.
 */
import { packr } from "../server/runs/records.ts";
import type {
  AnnotationRecord,
  EventRecord,
  FrameRecord,
  HeaderRecord,
  RunStatus,
  SnapshotRecord,
  StatusRecord,
} from "../server/runs/records.ts";
import type { SweepInfo } from "../server/experiments/sweep.ts";

export type {
  AnnotationRecord,
  EventRecord,
  FrameRecord,
  HeaderRecord,
  RunStatus,
  SnapshotRecord,
  StatusRecord,
  SweepInfo,
};

/**
 * The one codec, the run log's own: typed arrays travel as msgpack ext type 0x74, maps decode
 * as plain objects, so a streamed record and a logged one are written the same way.
 */
export const wirePackr = packr;

/** Larger client→server messages are refused with an error (the socket stays open). */
export const MAX_CLIENT_MESSAGE_BYTES = 64 * 1024;
/** Close code for a subscriber that stayed stuck (not reading) past the server's limit. */
export const CLOSE_STALLED = 4008;
/** Close code when the server shuts down. */
export const CLOSE_GOING_AWAY = 1001;
/** `since` value meaning "nothing old, only records from now on". */
export const SINCE_LIVE = -1;

// ---- client → server -------------------------------------------------------------------

export interface SubscribeRequest {
  type: "subscribe";
  /** Run ids, or "*" for every run, including runs created later. */
  runs: string[] | "*";
  /** Last seq seen per run: the server sends records with a larger seq. Absent means 0. */
  since?: Record<string, number>;
  /** Whether to receive frame records (large per-coordinate arrays). Default true. */
  frames?: boolean;
}

export interface UnsubscribeRequest {
  type: "unsubscribe";
  runs: string[] | "*";
}

export interface HistoryRequest {
  type: "history";
  /** Chosen by the client; echoed in the reply (or in an error). */
  req: number;
  run: string;
  from_step?: number;
  to_step?: number;
  /** Number of buckets (min, max, last per bucket). Absent: one bucket per snapshot. */
  buckets?: number;
  /** Metric names to include. Absent: all of the run's metrics. */
  metrics?: string[];
}

export interface PingRequest {
  type: "ping";
  req: number;
}

export type ClientMessage = SubscribeRequest | UnsubscribeRequest | HistoryRequest | PingRequest;

// ---- server → client -------------------------------------------------------------------

export interface HelloMessage {
  type: "hello";
  run: string;
  header: HeaderRecord;
  status: RunStatus;
  /** The run's last seq when the hello was sent. */
  last_seq: number;
  /** The step of the run's latest snapshot. */
  step: number;
  /** The run's name, tags and note now (spec, then annotations; the latest wins). */
  name?: string;
  tags?: string[];
  note?: string;
  /** The replicas' settings when the run is a sweep (same object as header.sweep). */
  sweep?: SweepInfo;
}

export type SnapshotMessage = SnapshotRecord & { run: string };
export type EventMessage = EventRecord & { run: string };
export type FrameMessage = FrameRecord & { run: string };
export type StatusMessage = StatusRecord & { run: string };
export type AnnotationMessage = AnnotationRecord & { run: string };
export type RecordMessage =
  | SnapshotMessage
  | EventMessage
  | FrameMessage
  | StatusMessage
  | AnnotationMessage;

export interface SkippedMessage {
  type: "skipped";
  run: string;
  /** Inclusive range of seqs this subscriber will not receive. */
  from_seq: number;
  to_seq: number;
  /** slow_consumer: coalesced away (backpressure); damaged: the run log cannot give them. */
  reason: "slow_consumer" | "damaged";
  /** With reason damaged, when the range holds the run's final status: how the run ended. */
  status?: string;
  step?: number;
  error?: string;
}

export interface HistoryBucketStats {
  /** [bucket × replica], row-major: entry b·replicas + r. */
  min: Float32Array;
  max: Float32Array;
  last: Float32Array;
}

export interface HistoryReply {
  type: "history";
  req: number;
  run: string;
  from_step: number;
  to_step: number;
  replicas: number;
  /** Snapshots in [from_step, to_step] that went into the buckets. */
  snapshots: number;
  /** Non-empty buckets, in step order. */
  buckets: number;
  /** First and last snapshot step inside each bucket (equal when a bucket holds one snapshot). */
  steps_from: Float64Array;
  steps_to: Float64Array;
  /** Step of the snapshot whose values are `last` (same as steps_to). */
  last_step: Float64Array;
  /** wall_ms of that snapshot. */
  wall_ms: Float64Array;
  metrics: Record<string, HistoryBucketStats>;
}

export interface PongMessage {
  type: "pong";
  req: number;
  /** Server clock, Unix epoch milliseconds. */
  time: number;
}

export interface RemovedMessage {
  type: "removed";
  run: string;
}

export type ErrorCode =
  | "malformed"
  | "too_large"
  | "unknown_type"
  | "bad_request"
  | "unknown_run"
  | "internal";

export interface ErrorMessage {
  type: "error";
  req?: number;
  run?: string;
  code: ErrorCode;
  message: string;
}

export type ServerMessage =
  | HelloMessage
  | RecordMessage
  | SkippedMessage
  | HistoryReply
  | PongMessage
  | RemovedMessage
  | ErrorMessage;

/**
 * The stream URL for a lab base URL: http(s)://host:port → ws(s)://host:port/api/stream. The
 * token never goes into it (URLs end up in logs and browser history): see streamProtocols.
 */
export function streamUrl(base: string): string {
  const u = new URL(base);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (!u.pathname.endsWith("/api/stream")) u.pathname = u.pathname.replace(/\/?$/, "/api/stream");
  return u.toString();
}

/** The subprotocol the lab's stream answers with when a client offers it. */
export const STREAM_SUBPROTOCOL = "lab.stream";
/** A subprotocol carrying the access token: this prefix, then the token's UTF-8 in base64url. */
export const TOKEN_SUBPROTOCOL_PREFIX = "lab.bearer.";

/**
 * The WebSocket subprotocols that present a token (browsers cannot set headers on a
 * WebSocket): `lab.bearer.<base64url(token)>` beside `lab.stream`, which the server picks
 * (a browser refuses a handshake that selects none of the offered subprotocols). Without a
 * token, none.
 */
export function streamProtocols(token?: string): string[] {
  if (!token) return [];
  const bytes = new TextEncoder().encode(token);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  const b64url = btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  return [STREAM_SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX + b64url];
}

/** The token a `lab.bearer.…` subprotocol carries; undefined when it is not valid base64url. */
export function tokenFromProtocol(protocol: string): string | undefined {
  const b64url = protocol.slice(TOKEN_SUBPROTOCOL_PREFIX.length);
  if (!protocol.startsWith(TOKEN_SUBPROTOCOL_PREFIX) || !/^[A-Za-z0-9_-]*$/.test(b64url)) {
    return undefined;
  }
  try {
    const binary = atob(b64url.replaceAll("-", "+").replaceAll("_", "/"));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
