/**
 * Parsing and validation of client→server stream messages (JSON text or msgpack binary).
 * Every failure becomes an error message naming the problem; none closes the socket.
 */
import {
  type ClientMessage,
  type ErrorMessage,
  MAX_CLIENT_MESSAGE_BYTES,
  SINCE_LIVE,
  wirePackr,
} from "../../client/protocol.ts";

export type ParseResult = { ok: true; msg: ClientMessage } | { ok: false; error: ErrorMessage };

const TYPES = ["subscribe", "unsubscribe", "history", "ping"];
const MAX_RUNS_PER_MESSAGE = 1000;
const MAX_BUCKETS = 1_000_000;

function fail(code: ErrorMessage["code"], message: string, req?: unknown): ParseResult {
  return {
    ok: false,
    error: { type: "error", code, message, ...(typeof req === "number" ? { req } : {}) },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0;
}

function checkRuns(v: unknown): string | undefined {
  if (v === "*") return undefined;
  if (!Array.isArray(v)) return 'runs: must be "*" or an array of run ids';
  if (v.length > MAX_RUNS_PER_MESSAGE) return `runs: at most ${MAX_RUNS_PER_MESSAGE} per message`;
  if (!v.every((r) => typeof r === "string" && r.length > 0 && r.length <= 200)) {
    return "runs: every run id must be a non-empty string";
  }
  return undefined;
}

/** Size in bytes of a text message as UTF-8 (computed only when it could matter). */
function utf8Length(s: string): number {
  return s.length * 3 <= MAX_CLIENT_MESSAGE_BYTES ? s.length : new TextEncoder().encode(s).length;
}

export function parseClientMessage(data: string | ArrayBuffer | Uint8Array): ParseResult {
  const size = typeof data === "string" ? utf8Length(data) : data.byteLength;
  if (size > MAX_CLIENT_MESSAGE_BYTES) {
    return fail(
      "too_large",
      `message of ${size} bytes exceeds the ${MAX_CLIENT_MESSAGE_BYTES}-byte limit`,
    );
  }
  let value: unknown;
  try {
    value = typeof data === "string"
      ? JSON.parse(data)
      : wirePackr.unpack(data instanceof Uint8Array ? data : new Uint8Array(data));
  } catch (e) {
    const what = typeof data === "string" ? "JSON" : "msgpack";
    return fail("malformed", `not valid ${what}: ${e instanceof Error ? e.message : e}`);
  }
  if (!isObject(value) || typeof value.type !== "string") {
    return fail("malformed", 'a message must be an object with a string "type"');
  }
  const m = value;
  if (!TYPES.includes(m.type as string)) {
    return fail(
      "unknown_type",
      `unknown message type ${JSON.stringify(m.type)}; known: ${TYPES.join(", ")}`,
      m.req,
    );
  }
  const problems: string[] = [];
  switch (m.type) {
    case "subscribe": {
      const r = checkRuns(m.runs);
      if (r) problems.push(r);
      if (m.since !== undefined) {
        if (!isObject(m.since)) problems.push("since: must be an object {runId: lastSeq}");
        else {
          for (const [run, seq] of Object.entries(m.since)) {
            if (typeof seq !== "number" || !Number.isInteger(seq) || seq < SINCE_LIVE) {
              problems.push(`since.${run}: must be an integer ≥ -1`);
            }
          }
        }
      }
      if (m.frames !== undefined && typeof m.frames !== "boolean") {
        problems.push("frames: must be true or false");
      }
      break;
    }
    case "unsubscribe": {
      const r = checkRuns(m.runs);
      if (r) problems.push(r);
      break;
    }
    case "history":
      if (typeof m.req !== "number") problems.push("req: a number is required");
      if (typeof m.run !== "string") problems.push("run: a run id is required");
      if (m.from_step !== undefined && !isCount(m.from_step)) {
        problems.push("from_step: must be a number ≥ 0");
      }
      if (m.to_step !== undefined && !isCount(m.to_step)) {
        problems.push("to_step: must be a number ≥ 0");
      }
      if (
        m.buckets !== undefined &&
        !(Number.isInteger(m.buckets) && (m.buckets as number) >= 1 &&
          (m.buckets as number) <= MAX_BUCKETS)
      ) {
        problems.push(`buckets: must be an integer in [1, ${MAX_BUCKETS}]`);
      }
      if (
        m.metrics !== undefined &&
        !(Array.isArray(m.metrics) && m.metrics.every((x) => typeof x === "string"))
      ) {
        problems.push("metrics: must be an array of metric names");
      }
      break;
    case "ping":
      if (typeof m.req !== "number") problems.push("req: a number is required");
      break;
  }
  if (problems.length) return fail("bad_request", `${m.type}: ${problems.join("; ")}`, m.req);
  return { ok: true, msg: m as unknown as ClientMessage };
}
