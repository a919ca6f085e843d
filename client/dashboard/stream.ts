/**
 * The dashboard's live feed, on the lab's subscriber library (client/subscriber.ts): one
 * subscription to every run ("*"), resumed after a disconnect or a server restart with
 * `since` (the last seq seen per run) so nothing is missed or repeated; history requests
 * fetch a zoomed window re-bucketed by the server. Message shapes: docs/protocol.md.
 */
import {
  type HelloMessage,
  type HistoryReply,
  type RecordMessage,
  Subscriber,
} from "../subscriber.ts";
import { accessToken } from "./token.ts";

export type { HelloMessage, HistoryReply, RecordMessage };

export interface StreamHandlers {
  hello(msg: HelloMessage): void;
  record(msg: RecordMessage): void;
  removed(run: string): void;
  /** The server dropped records of a run for this (slow) page; they can be re-read. */
  skipped(run: string): void;
  connection(connected: boolean): void;
}

export class LabStream {
  private sub: Subscriber | null = null;

  constructor(private readonly handlers: StreamHandlers) {}

  connect(): void {
    const h = this.handlers;
    this.sub = new Subscriber({
      url: location.origin,
      token: accessToken(),
      runs: "*",
      maxDelayMs: 2000,
      onHello: (m) => h.hello(m),
      onSnapshot: (m) => h.record(m),
      onEvent: (m) => h.record(m),
      onFrame: (m) => h.record(m),
      onStatus: (m) => h.record(m),
      onRemoved: (m) => h.removed(m.run),
      onSkipped: (m) => h.skipped(m.run),
      onConnection: (state) => h.connection(state === "open"),
    });
  }

  get connected(): boolean {
    return this.sub?.connected ?? false;
  }

  /**
   * The window [from, to] of a run re-bucketed by the server (the whole run when from and
   * to are undefined); null if it could not answer.
   */
  async history(
    run: string,
    fromStep: number | undefined,
    toStep: number | undefined,
    buckets: number,
  ): Promise<HistoryReply | null> {
    if (!this.sub?.connected) return null;
    try {
      return await this.sub.history(run, { from_step: fromStep, to_step: toStep, buckets });
    } catch {
      return null;
    }
  }

  close(): void {
    this.sub?.close();
  }
}
