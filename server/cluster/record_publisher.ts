/**
 * Publishes one job's records on its run's subject (docs/protocol.md, "Records on NATS
 * subjects"): msgpack bytes as the WebSocket stream carries them, msgID `<run>.<shard>.<seq>`
 * so that a record published twice (a retry, a resumed job re-emitting what followed its
 * checkpoint) is stored once, and headers saying which shard of the run it belongs to.
 *
 * Records go out in batches in order; a batch's records are in flight together (one
 * connection keeps their order) and the next batch waits for the previous one's
 * acknowledgements. A publish that fails (NATS down, a timeout) is retried until it is stored,
 * so after an outage a retried record may land after later ones: subscribers order by seq.
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import { encodeRecord } from "../runs/records.ts";
import type { BodyRecord } from "../runs/records.ts";
import { recordsSubject } from "./nats.ts";
import { jobKey, type JobMessage } from "./job_message.ts";

export const HEADER_SHARD = "Lab-Shard";
export const HEADER_SHARDS = "Lab-Shards";
export const HEADER_FIRST = "Lab-First";
export const HEADER_WORKER = "Lab-Worker";
export const HEADER_MARKER = "Lab-Marker";

/** Records published at once at most (each one a pending acknowledgement). */
const WINDOW = 256;
const RETRY_MS = 1000;

interface Item {
  bytes: Uint8Array;
  msgID: string;
  marker?: string;
}

export class RecordPublisher {
  readonly subject: string;
  #chain: Promise<void> = Promise.resolve();
  #pending = 0;
  #closed = false;
  #key: string;

  constructor(
    private js: JetStreamClient,
    private job: JobMessage,
    private worker: string,
    /** Told once per outage that publishing waits for NATS (and once when it goes on). */
    private report: (line: string) => void = () => {},
  ) {
    this.subject = recordsSubject(job.run);
    this.#key = jobKey(job.run, job.shard);
  }

  /** Records not yet stored by the stream. */
  get pending(): number {
    return this.#pending;
  }

  /** Queues records of the job's deterministic sequence (each has its seq ≥ 1). */
  push(records: BodyRecord[]): void {
    this.#enqueue(records.map((r) => ({
      bytes: encodeRecord(r),
      msgID: `${this.#key}.${r.seq}`,
    })));
  }

  /**
   * Queues a marker: a record outside the deterministic sequence (seq 0), e.g. the `resumed`
   * event of a redelivered job, stored once per `attempt`.
   */
  pushMarker(record: BodyRecord, marker: string, attempt: number): void {
    this.#enqueue([{
      bytes: encodeRecord({ ...record, seq: 0 }),
      msgID: `${this.#key}.${marker}.${attempt}`,
      marker,
    }]);
  }

  /** Resolves once every record queued so far is stored. */
  flush(): Promise<void> {
    return this.#chain;
  }

  /** Gives up on what is not yet stored (a worker killed hard); flush() then resolves. */
  close(): void {
    this.#closed = true;
  }

  #enqueue(items: Item[]): void {
    if (items.length === 0) return;
    this.#pending += items.length;
    this.#chain = this.#chain.then(async () => {
      for (let i = 0; i < items.length; i += WINDOW) {
        await this.#store(items.slice(i, i + WINDOW));
      }
      this.#pending -= items.length;
    });
  }

  #headers(marker?: string) {
    const h = natsHeaders();
    h.set(HEADER_SHARD, String(this.job.shard));
    h.set(HEADER_SHARDS, String(this.job.shards));
    h.set(HEADER_FIRST, String(this.job.first));
    h.set(HEADER_WORKER, this.worker);
    if (marker) h.set(HEADER_MARKER, marker);
    return h;
  }

  async #store(items: Item[]): Promise<void> {
    let todo = items;
    let waiting = false;
    while (todo.length > 0 && !this.#closed) {
      const results = await Promise.allSettled(
        todo.map((it) =>
          this.js.publish(this.subject, it.bytes, {
            msgID: it.msgID,
            headers: this.#headers(it.marker),
          })
        ),
      );
      const failed = todo.filter((_, i) => results[i].status === "rejected");
      if (failed.length === 0) break;
      if (!waiting) {
        const why = (results.find((r) => r.status === "rejected") as PromiseRejectedResult).reason;
        this.report(
          `publishing records of ${this.#key} failed (${
            why instanceof Error ? why.message : why
          }); retrying until NATS takes them`,
        );
        waiting = true;
      }
      todo = failed;
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
    if (waiting && !this.#closed) this.report(`publishing records of ${this.#key} again`);
  }
}
