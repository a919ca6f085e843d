/**
 * The stream hub: every WebSocket subscriber has a cursor (last seq sent) per run and pulls
 * records from the run manager (ring in memory, else the run log) when its socket can take
 * them. Nothing is queued per socket beyond what the socket itself buffers, so a slow or
 * stalled subscriber costs the run and the other subscribers nothing:
 *  - sending pauses while the socket's bufferedAmount is above the high-water mark;
 *  - a subscriber whose pending live records are older than `maxLagMs` gets them coalesced
 *    (events and status changes kept, only the newest snapshot and frame) and a `skipped`
 *    message for each dropped range, which it can fetch later with a history request;
 *  - a socket that goes above the high-water mark and does not drain below the low-water
 *    mark within `stallLimitMs` is closed (4008).
 * Replays (a late subscriber, a resume with `since`) are sent in full, paced the same way.
 */
import {
  CLOSE_GOING_AWAY,
  CLOSE_STALLED,
  type ErrorMessage,
  type HelloMessage,
  type HistoryRequest,
  SINCE_LIVE,
  type SkippedMessage,
  type SubscribeRequest,
  wirePackr,
} from "../../client/protocol.ts";
import type { BodyRecord, SnapshotRecord } from "../runs/records.ts";
import type { ManagerEvent, RunManager } from "../runs/manager.ts";
import { parseClientMessage } from "./ws_messages.ts";
import { describeInternalError } from "./errors.ts";

export interface StreamOptions {
  /** Stop sending to a socket with more than this many bytes not yet written. */
  highWaterBytes?: number;
  /** A paused socket resumes below this. */
  lowWaterBytes?: number;
  /** Close a socket that has not drained below the low-water mark this long after filling. */
  stallLimitMs?: number;
  /** Live records pending longer than this are coalesced for that subscriber. */
  maxLagMs?: number;
  /** How often paused sockets are checked. */
  tickMs?: number;
  /** Records read per step while replaying history to a subscriber. */
  replayBatch?: number;
  /** Most floats (buckets × replicas × metrics × 3) in one history reply. */
  maxHistoryFloats?: number;
}

interface Sub {
  run: string;
  /** Last seq sent (or skipped) to this subscriber. */
  cursor: number;
  /** The run's last seq at subscribe time: records up to here are a replay, never coalesced. */
  replayTo: number;
  /** The hello for this run is still to be sent (it precedes the run's records). */
  hello: boolean;
  frames: boolean;
}

interface Client {
  socket: WebSocket;
  /** Remote address, for diagnostics. */
  peer: string;
  subs: Map<string, Sub>;
  all: boolean;
  allFrames: boolean;
  pumping: boolean;
  again: boolean;
  congestedSince?: number;
  drainTimer?: ReturnType<typeof setTimeout>;
  closed: boolean;
}

export interface SocketInfo {
  peer: string;
  buffered: number;
  /** Milliseconds above the high-water mark so far (0 when flowing). */
  congested_ms: number;
  subscriptions: number;
  /** Records not yet sent, over its subscriptions. */
  behind: number;
}

export interface StreamStats {
  sockets: number;
  subscriptions: number;
  congested: number;
  skipped_records: number;
  stalled_closed: number;
}

export class StreamHub {
  #manager: RunManager;
  #o: Required<StreamOptions>;
  #clients = new Set<Client>();
  #encoded = new WeakMap<BodyRecord, Uint8Array>();
  #timer?: ReturnType<typeof setInterval>;
  #unlisten: () => void;
  #skipped = 0;
  #stalledClosed = 0;

  constructor(manager: RunManager, opts: StreamOptions = {}) {
    this.#manager = manager;
    this.#o = {
      highWaterBytes: 1024 * 1024,
      lowWaterBytes: 256 * 1024,
      stallLimitMs: 15_000,
      maxLagMs: 1000,
      tickMs: 50,
      replayBatch: 256,
      maxHistoryFloats: 4_000_000,
      ...opts,
    };
    this.#unlisten = manager.listen((e) => this.#onManager(e));
  }

  stats(): StreamStats {
    let subs = 0, congested = 0;
    for (const c of this.#clients) {
      subs += c.subs.size;
      if (c.congestedSince !== undefined) congested++;
    }
    return {
      sockets: this.#clients.size,
      subscriptions: subs,
      congested,
      skipped_records: this.#skipped,
      stalled_closed: this.#stalledClosed,
    };
  }

  /** Per-socket state, for diagnostics (which subscriber is slow). */
  sockets(): SocketInfo[] {
    const now = Date.now();
    return [...this.#clients].map((c) => ({
      peer: c.peer,
      buffered: c.socket.bufferedAmount,
      congested_ms: c.congestedSince === undefined ? 0 : now - c.congestedSince,
      subscriptions: c.subs.size,
      behind: [...c.subs.values()].reduce(
        (n, s) => n + Math.max(0, this.#manager.lastSeq(s.run) - s.cursor),
        0,
      ),
    }));
  }

  /** Takes over a server-side WebSocket from Deno.upgradeWebSocket. */
  attach(socket: WebSocket, peer = "unknown"): void {
    const c: Client = {
      socket,
      peer,
      subs: new Map(),
      all: false,
      allFrames: true,
      pumping: false,
      again: false,
      closed: false,
    };
    socket.binaryType = "arraybuffer";
    socket.onmessage = (e) => {
      try {
        this.#onMessage(c, e.data);
      } catch (err) {
        console.error("stream message handler failed:", err);
        this.#sendMsg(c, { type: "error", code: "internal", message: "internal error" });
      }
    };
    socket.onerror = () => {/* a close event follows */};
    socket.onclose = () => this.#drop(c);
    this.#clients.add(c);
    this.#timer ??= setInterval(() => this.#tick(), this.#o.tickMs);
  }

  /** Closes every socket; subscribers may reconnect and resume. */
  disconnectAll(code: number = CLOSE_GOING_AWAY, reason = "server shutting down"): void {
    for (const c of [...this.#clients]) {
      try {
        c.socket.close(code, reason);
      } catch { /* already closing */ }
      this.#drop(c);
    }
  }

  /** Server shutdown: closes every socket and stops listening to the runs. */
  close(): void {
    this.#unlisten();
    this.disconnectAll();
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #drop(c: Client): void {
    c.closed = true;
    clearTimeout(c.drainTimer);
    c.subs.clear();
    this.#clients.delete(c);
    if (this.#clients.size === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #open(c: Client): boolean {
    return !c.closed && c.socket.readyState === WebSocket.OPEN;
  }

  #sendBytes(c: Client, bytes: Uint8Array): boolean {
    if (!this.#open(c)) return false;
    try {
      c.socket.send(bytes);
      return true;
    } catch {
      return false;
    }
  }

  #sendMsg(c: Client, msg: unknown): boolean {
    return this.#sendBytes(c, wirePackr.pack(msg));
  }

  /** A record as a stream message, encoded once and shared by every subscriber. */
  #encode(run: string, r: BodyRecord): Uint8Array {
    let bytes = this.#encoded.get(r);
    if (!bytes) {
      bytes = wirePackr.pack({ ...r, run });
      this.#encoded.set(r, bytes);
    }
    return bytes;
  }

  #onManager(e: ManagerEvent): void {
    for (const c of this.#clients) {
      if (e.type === "added") {
        if (c.all) {
          this.#addSub(c, e.run, 0, c.allFrames);
          this.#pump(c);
        }
      } else if (e.type === "removed") {
        if (c.subs.delete(e.run)) this.#sendMsg(c, { type: "removed", run: e.run });
      } else if (c.subs.has(e.run) && c.congestedSince === undefined) {
        this.#pump(c);
      }
    }
  }

  #onMessage(c: Client, data: unknown): void {
    const parsed = parseClientMessage(data as string | ArrayBuffer);
    if (!parsed.ok) {
      this.#sendMsg(c, parsed.error);
      return;
    }
    const msg = parsed.msg;
    switch (msg.type) {
      case "subscribe":
        this.#subscribe(c, msg);
        break;
      case "unsubscribe":
        if (msg.runs === "*") {
          c.all = false;
          c.subs.clear();
        } else for (const r of msg.runs) c.subs.delete(r);
        break;
      case "ping":
        this.#sendMsg(c, { type: "pong", req: msg.req, time: Date.now() });
        break;
      case "history":
        this.#history(c, msg).catch((err) => {
          console.error("history request failed:", err);
          this.#sendMsg(
            c,
            {
              type: "error",
              req: msg.req,
              run: msg.run,
              code: "internal",
              message: `history failed: ${describeInternalError(err)}`,
            } satisfies ErrorMessage,
          );
        });
        break;
    }
  }

  #subscribe(c: Client, msg: SubscribeRequest): void {
    const frames = msg.frames ?? true;
    let runs: string[];
    if (msg.runs === "*") {
      c.all = true;
      c.allFrames = frames;
      runs = this.#manager.ids();
    } else runs = msg.runs;
    for (const run of runs) {
      if (!this.#manager.has(run)) {
        this.#sendMsg(
          c,
          {
            type: "error",
            run,
            code: "unknown_run",
            message: `no run with id ${JSON.stringify(run)}`,
          } satisfies ErrorMessage,
        );
        continue;
      }
      this.#addSub(c, run, msg.since?.[run], frames);
    }
    this.#pump(c);
  }

  #addSub(c: Client, run: string, since: number | undefined, frames: boolean): void {
    const head = this.#manager.lastSeq(run);
    // Live-only, or a client that claims more than exists (it is told the truth in hello).
    const cursor = since === undefined ? 0 : since === SINCE_LIVE || since > head ? head : since;
    c.subs.set(run, { run, cursor, replayTo: head, hello: true, frames });
  }

  #hello(run: string): HelloMessage {
    const header = this.#manager.header(run)!;
    const labels = this.#manager.runSummary(run);
    return {
      type: "hello",
      run,
      header,
      status: this.#manager.status(run)!,
      last_seq: this.#manager.lastSeq(run),
      step: this.#manager.step(run),
      ...(labels?.name ? { name: labels.name } : {}),
      tags: labels?.tags ?? [],
      ...(labels?.note ? { note: labels.note } : {}),
      ...(header.sweep ? { sweep: header.sweep } : {}),
    };
  }

  #congested(c: Client): boolean {
    return c.socket.bufferedAmount >= this.#o.highWaterBytes;
  }

  /** Sends whatever this client's subscriptions are missing, until its socket is full. */
  async #pump(c: Client): Promise<void> {
    if (c.pumping) {
      c.again = true;
      return;
    }
    c.pumping = true;
    try {
      do {
        c.again = false;
        for (const sub of [...c.subs.values()]) {
          if (!(await this.#pumpSub(c, sub))) break;
        }
      } while (c.again && this.#open(c) && !this.#congested(c));
      if (this.#open(c) && this.#congested(c)) this.#watchDrain(c);
    } catch (err) {
      console.error("stream pump failed:", err);
    } finally {
      c.pumping = false;
    }
  }

  /**
   * WebSockets have no "drained" event, so a full socket is polled: soon at first (a fast
   * reader empties it in milliseconds, and waiting a whole tick would cap its throughput at
   * highWater per tick), then backing off to the tick interval.
   */
  #watchDrain(c: Client, delay = 2): void {
    if (c.drainTimer !== undefined) return;
    c.drainTimer = setTimeout(() => {
      c.drainTimer = undefined;
      if (!this.#open(c)) return;
      if (c.socket.bufferedAmount <= this.#o.lowWaterBytes) this.#pump(c);
      else this.#watchDrain(c, Math.min(2 * delay, this.#o.tickMs));
    }, delay);
  }

  /** Returns false when the socket cannot take more now (full or closed). */
  async #pumpSub(c: Client, sub: Sub): Promise<boolean> {
    while (true) {
      if (!this.#open(c)) return false;
      if (c.subs.get(sub.run) !== sub) return true; // unsubscribed or replaced meanwhile
      if (sub.hello) {
        sub.hello = false;
        this.#sendMsg(c, this.#hello(sub.run));
      }
      if (sub.cursor >= this.#manager.lastSeq(sub.run)) return true;
      if (this.#congested(c)) return false;
      const replaying = sub.cursor < sub.replayTo;
      const max = replaying ? this.#o.replayBatch : Infinity;
      // The log holds every record up to `head` (a record is logged before it is counted).
      const head = this.#manager.lastSeq(sub.run);
      const inMemory = this.#manager.readAfterSync(sub.run, sub.cursor, max);
      const recs = inMemory ?? await this.#manager.readAfter(sub.run, sub.cursor, max);
      if (c.subs.get(sub.run) !== sub) return true;
      const fresh = recs.filter((r) => r.seq > sub.cursor);
      if (fresh.length === 0) {
        // Nothing readable after the cursor, though the log had records up to `head`: the
        // rest of the run's log is damaged (e.g. its final status).
        if (inMemory === undefined && sub.cursor < head) this.#sendDamaged(c, sub, head);
        else return true;
        continue;
      }
      if (!replaying && Date.now() - fresh[0].time > this.#o.maxLagMs) {
        this.#sendCoalesced(c, sub, fresh, inMemory === undefined);
        continue;
      }
      for (const r of fresh) {
        // The log serves records in seq order: one missing before `r` is a damaged one.
        if (inMemory === undefined && r.seq > sub.cursor + 1) this.#sendDamaged(c, sub, r.seq - 1);
        if (r.type !== "frame" || sub.frames) {
          if (!this.#sendBytes(c, this.#encode(sub.run, r))) return false;
        }
        sub.cursor = r.seq;
        if (this.#congested(c)) return false;
      }
    }
  }

  /**
   * Announces records up to `to` after the cursor that the run's log cannot give (damaged,
   * docs/storage.md). If they hold the final status of an ended run, the message says how the
   * run ended (from its summary), so that a subscriber waiting for that status still learns it.
   */
  #sendDamaged(c: Client, sub: Sub, to: number): void {
    const from = sub.cursor + 1;
    const end = this.#manager.ending(sub.run);
    const holdsEnd = end !== undefined &&
      (end.statusSeq === undefined
        ? to >= this.#manager.lastSeq(sub.run)
        : from <= end.statusSeq && end.statusSeq <= to);
    const msg: SkippedMessage = {
      type: "skipped",
      run: sub.run,
      from_seq: from,
      to_seq: to,
      reason: "damaged",
      ...(holdsEnd
        ? { status: end.status, step: end.step, ...(end.error ? { error: end.error } : {}) }
        : {}),
    };
    this.#sendMsg(c, msg);
    sub.cursor = to;
  }

  /**
   * Sends the newest snapshot, the newest frame of each name, and every event and status
   * change; reports the rest as skipped ranges, in seq order.
   */
  #sendCoalesced(c: Client, sub: Sub, recs: BodyRecord[], fromLog: boolean): void {
    let lastSnapshot: SnapshotRecord | undefined;
    const lastFrame = new Map<string, BodyRecord>();
    for (const r of recs) {
      if (r.type === "snapshot") lastSnapshot = r;
      else if (r.type === "frame" && sub.frames) lastFrame.set(r.name, r);
    }
    const keep = new Set<BodyRecord>(lastFrame.values());
    if (lastSnapshot) keep.add(lastSnapshot);
    let skipFrom = 0;
    const flushSkip = (to: number) => {
      if (!skipFrom) return;
      const msg: SkippedMessage = {
        type: "skipped",
        run: sub.run,
        from_seq: skipFrom,
        to_seq: to,
        reason: "slow_consumer",
      };
      this.#sendMsg(c, msg);
      this.#skipped += to - skipFrom + 1;
      skipFrom = 0;
    };
    for (const r of recs) {
      if (fromLog && r.seq > sub.cursor + 1) {
        flushSkip(sub.cursor);
        this.#sendDamaged(c, sub, r.seq - 1);
      }
      if (r.type === "event" || r.type === "status" || r.type === "annotation" || keep.has(r)) {
        flushSkip(r.seq - 1);
        this.#sendBytes(c, this.#encode(sub.run, r));
      } else if (!skipFrom) skipFrom = r.seq;
      sub.cursor = r.seq;
    }
    flushSkip(sub.cursor);
  }

  #tick(): void {
    const now = Date.now();
    for (const c of [...this.#clients]) {
      if (!this.#open(c)) continue;
      const buffered = c.socket.bufferedAmount;
      if (buffered >= this.#o.highWaterBytes) c.congestedSince ??= now;
      else if (buffered <= this.#o.lowWaterBytes) c.congestedSince = undefined;
      if (c.congestedSince !== undefined) {
        if (now - c.congestedSince > this.#o.stallLimitMs) this.#closeStalled(c, buffered);
        continue;
      }
      for (const sub of c.subs.values()) {
        if (sub.hello || sub.cursor < this.#manager.lastSeq(sub.run)) {
          this.#pump(c);
          break;
        }
      }
    }
  }

  #closeStalled(c: Client, buffered: number): void {
    this.#stalledClosed++;
    const seconds = Math.round(this.#o.stallLimitMs / 1000);
    try {
      // The reason must fit in 123 bytes.
      c.socket.close(CLOSE_STALLED, `stalled: ${buffered} bytes unread for over ${seconds}s`);
    } catch { /* already closing */ }
    // The close frame may never get through a socket nobody reads; forget it now.
    this.#drop(c);
  }

  async #history(c: Client, msg: HistoryRequest): Promise<void> {
    const header = this.#manager.header(msg.run);
    if (!header) {
      this.#sendMsg(
        c,
        {
          type: "error",
          req: msg.req,
          run: msg.run,
          code: "unknown_run",
          message: `no run with id ${JSON.stringify(msg.run)}`,
        } satisfies ErrorMessage,
      );
      return;
    }
    // Each name once: a request naming one metric thousands of times costs what naming it once does.
    const metrics = [...new Set(msg.metrics ?? header.metrics)];
    const unknown = metrics.filter((m) => !header.metrics.includes(m));
    if (unknown.length) {
      this.#sendMsg(
        c,
        {
          type: "error",
          req: msg.req,
          run: msg.run,
          code: "bad_request",
          message: `history: unknown metric(s) ${unknown.join(", ")}; this run has ${
            header.metrics.join(", ")
          }`,
        } satisfies ErrorMessage,
      );
      return;
    }
    const replicas = header.spec.replicas;
    // Keep replies bounded: more buckets than this would be a multi-hundred-MB message. The
    // work is bounded the same way: the run index reads blocks, not every snapshot.
    const cap = Math.max(1, Math.floor(this.#o.maxHistoryFloats / (3 * replicas * metrics.length)));
    const result = await this.#manager.history(msg.run, {
      fromStep: msg.from_step,
      toStep: msg.to_step,
      buckets: Math.min(msg.buckets ?? Infinity, cap),
      metrics,
      replicas,
    });
    if (!result) return;
    this.#sendMsg(c, { type: "history", req: msg.req, run: msg.run, ...result });
  }
}
