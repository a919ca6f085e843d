/**
 * A small typed subscriber for the lab's stream, for Deno and browsers. It keeps the last
 * seq seen per run, so after a dropped connection it reconnects (with backoff) and resumes
 * with `since`: the callbacks see every record exactly once, in seq order, except ranges the
 * server reports as skipped for a slow consumer. Protocol: docs/protocol.md.
 *
 *   const sub = new Subscriber({ url: "http://127.0.0.1:8420", runs: "*",
 *     onSnapshot: (s) => console.log(s.run, s.step, s.metrics) });
 *   const h = await sub.history(runId, { buckets: 500 });
 *   sub.close();
 */
import {
  type AnnotationMessage,
  type ClientMessage,
  type ErrorMessage,
  type EventMessage,
  type FrameMessage,
  type HelloMessage,
  type HistoryReply,
  type HistoryRequest,
  type PongMessage,
  type RemovedMessage,
  type ServerMessage,
  type SkippedMessage,
  type SnapshotMessage,
  type StatusMessage,
  streamProtocols,
  streamUrl,
  wirePackr,
} from "./protocol.ts";

export * from "./protocol.ts";

export interface SubscriberHandlers {
  onHello?(m: HelloMessage): void;
  onSnapshot?(m: SnapshotMessage): void;
  onEvent?(m: EventMessage): void;
  onFrame?(m: FrameMessage): void;
  onStatus?(m: StatusMessage): void;
  /** The run was renamed, retagged or annotated (name/tags/note: the fields it changes). */
  onAnnotation?(m: AnnotationMessage): void;
  onSkipped?(m: SkippedMessage): void;
  onRemoved?(m: RemovedMessage): void;
  /** Errors the server sent that answer no request (e.g. subscribing to an unknown run). */
  onError?(m: ErrorMessage): void;
  /** Connection changes; `closed` carries the close code and reason. */
  onConnection?(state: "open" | "closed", info?: { code: number; reason: string }): void;
}

export interface SubscriberOptions extends SubscriberHandlers {
  /** The lab's base URL (http://host:port) or the stream URL itself (ws://host:port/api/stream). */
  url: string;
  /** The lab's access token, if it needs one: sent as a subprotocol, never in the URL. */
  token?: string;
  /** Initial subscription; more can be added with subscribe(). */
  runs?: string[] | "*";
  /** Receive frame records. Default true. */
  frames?: boolean;
  /** Last seq already seen per run (e.g. restored from storage). */
  since?: Record<string, number>;
  /** Reconnect after a dropped connection. Default true. */
  reconnect?: boolean;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Reject history/ping promises not answered within this time. Default 60 s. */
  requestTimeoutMs?: number;
  /** WebSocket implementation, for runtimes without a global one. */
  WebSocket?: typeof WebSocket;
}

export type HistoryOptions = Omit<HistoryRequest, "type" | "req" | "run">;

interface Pending {
  resolve(m: ServerMessage): void;
  reject(e: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

export class StreamRequestError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "StreamRequestError";
  }
}

export class Subscriber {
  #opts: SubscriberOptions;
  #url: string;
  #ws?: WebSocket;
  #closed = false;
  #delay: number;
  #timer?: ReturnType<typeof setTimeout>;
  #all = false;
  #runs = new Set<string>();
  #frames: boolean;
  #lastSeq = new Map<string, number>();
  #pending = new Map<number, Pending>();
  #nextReq = 1;

  constructor(opts: SubscriberOptions) {
    this.#opts = opts;
    this.#url = streamUrl(opts.url);
    this.#frames = opts.frames ?? true;
    this.#delay = opts.minDelayMs ?? 250;
    for (const [run, seq] of Object.entries(opts.since ?? {})) this.#lastSeq.set(run, seq);
    if (opts.runs === "*") this.#all = true;
    else for (const r of opts.runs ?? []) this.#runs.add(r);
    this.#connect();
  }

  get connected(): boolean {
    return this.#ws?.readyState === 1;
  }

  /** The last seq delivered (or reported skipped) for a run. */
  lastSeq(run: string): number | undefined {
    return this.#lastSeq.get(run);
  }

  /** Adds runs (or "*") to the subscription; records after the last seen seq follow. */
  subscribe(runs: string[] | "*"): void {
    if (runs === "*") this.#all = true;
    else for (const r of runs) this.#runs.add(r);
    this.#send({ type: "subscribe", runs, since: this.#sinceFor(runs), frames: this.#frames });
  }

  unsubscribe(runs: string[] | "*"): void {
    if (runs === "*") {
      this.#all = false;
      this.#runs.clear();
    } else for (const r of runs) this.#runs.delete(r);
    this.#send({ type: "unsubscribe", runs });
  }

  /** A run's snapshots over a step range, optionally decimated to min/max/last per bucket. */
  history(run: string, options: HistoryOptions = {}): Promise<HistoryReply> {
    return this.#request<HistoryReply>({ type: "history", req: 0, run, ...options });
  }

  /** Round-trip time in milliseconds. */
  async ping(): Promise<number> {
    const t0 = Date.now();
    await this.#request<PongMessage>({ type: "ping", req: 0 });
    return Date.now() - t0;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#failPending(new Error("subscriber closed"));
    try {
      this.#ws?.close(1000, "client closed");
    } catch { /* already closed */ }
  }

  #sinceFor(runs: string[] | "*"): Record<string, number> {
    const since: Record<string, number> = {};
    for (const [run, seq] of this.#lastSeq) {
      if (runs === "*" || runs.includes(run)) since[run] = seq;
    }
    return since;
  }

  #request<T extends ServerMessage>(msg: HistoryRequest | { type: "ping"; req: number }) {
    const req = this.#nextReq++;
    return new Promise<T>((resolve, reject) => {
      if (!this.connected) {
        reject(new Error("not connected to the lab stream"));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(req);
        reject(new Error(`${msg.type} request timed out`));
      }, this.#opts.requestTimeoutMs ?? 60_000);
      this.#pending.set(req, { resolve: resolve as (m: ServerMessage) => void, reject, timer });
      this.#send({ ...msg, req });
    });
  }

  #send(msg: ClientMessage): void {
    // While disconnected, the subscription state is kept and sent again on reconnect.
    if (this.connected) this.#ws!.send(JSON.stringify(msg));
  }

  #connect(): void {
    if (this.#closed) return;
    const WS = this.#opts.WebSocket ?? globalThis.WebSocket;
    let ws: WebSocket;
    try {
      ws = new WS(this.#url, streamProtocols(this.#opts.token));
    } catch (e) {
      this.#scheduleReconnect(1006, e instanceof Error ? e.message : String(e));
      return;
    }
    this.#ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.#delay = this.#opts.minDelayMs ?? 250;
      const runs = this.#all ? "*" : [...this.#runs];
      if (runs === "*" || runs.length > 0) {
        this.#send({ type: "subscribe", runs, since: this.#sinceFor(runs), frames: this.#frames });
      }
      this.#opts.onConnection?.("open");
    };
    ws.onmessage = (e: MessageEvent) => {
      if (!(e.data instanceof ArrayBuffer)) return; // the server only sends binary frames
      let msg: ServerMessage;
      try {
        msg = wirePackr.unpack(new Uint8Array(e.data)) as ServerMessage;
      } catch {
        return;
      }
      this.#dispatch(msg);
    };
    ws.onerror = () => {/* followed by close */};
    ws.onclose = (e: CloseEvent) => {
      if (this.#ws !== ws) return;
      this.#ws = undefined;
      this.#failPending(new Error(`connection closed (${e.code} ${e.reason})`));
      this.#opts.onConnection?.("closed", { code: e.code, reason: e.reason });
      this.#scheduleReconnect(e.code, e.reason);
    };
  }

  #scheduleReconnect(_code: number, _reason: string): void {
    if (this.#closed || this.#opts.reconnect === false) return;
    const jitter = 0.5 + Math.random() * 0.5;
    this.#timer = setTimeout(() => this.#connect(), this.#delay * jitter);
    this.#delay = Math.min(this.#opts.maxDelayMs ?? 10_000, this.#delay * 2);
  }

  #failPending(err: Error): void {
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.#pending.clear();
  }

  /** True if the record is new; records at or below the last seen seq are duplicates. */
  #fresh(run: string, seq: number): boolean {
    const last = this.#lastSeq.get(run) ?? 0;
    if (seq <= last) return false;
    this.#lastSeq.set(run, seq);
    return true;
  }

  #dispatch(msg: ServerMessage): void {
    const o = this.#opts;
    switch (msg.type) {
      case "hello":
        // A live-only subscription (since -1) resumes after the last seq the server had then.
        if ((this.#lastSeq.get(msg.run) ?? 0) < 0) this.#lastSeq.set(msg.run, msg.last_seq);
        o.onHello?.(msg);
        break;
      case "snapshot":
        if (this.#fresh(msg.run, msg.seq)) o.onSnapshot?.(msg);
        break;
      case "event":
        if (this.#fresh(msg.run, msg.seq)) o.onEvent?.(msg);
        break;
      case "frame":
        if (this.#fresh(msg.run, msg.seq)) o.onFrame?.(msg);
        break;
      case "status":
        if (this.#fresh(msg.run, msg.seq)) o.onStatus?.(msg);
        break;
      case "annotation":
        if (this.#fresh(msg.run, msg.seq)) o.onAnnotation?.(msg);
        break;
      case "skipped":
        if ((this.#lastSeq.get(msg.run) ?? 0) < msg.to_seq) {
          this.#lastSeq.set(msg.run, msg.to_seq);
          o.onSkipped?.(msg);
        }
        break;
      case "removed":
        this.#lastSeq.delete(msg.run);
        this.#runs.delete(msg.run);
        o.onRemoved?.(msg);
        break;
      case "history":
      case "pong":
        this.#settle(msg.req, msg);
        break;
      case "error":
        if (msg.req !== undefined && this.#pending.has(msg.req)) {
          this.#settle(msg.req, msg);
        } else {
          // A run that does not exist is not asked for again after a reconnect.
          if (msg.code === "unknown_run" && msg.run) this.#runs.delete(msg.run);
          o.onError?.(msg);
        }
        break;
    }
  }

  #settle(req: number, msg: ServerMessage): void {
    const p = this.#pending.get(req);
    if (!p) return;
    this.#pending.delete(req);
    clearTimeout(p.timer);
    if (msg.type === "error") p.reject(new StreamRequestError(msg.code, msg.message));
    else p.resolve(msg);
  }
}
