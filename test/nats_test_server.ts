/**
 * Real parts for the multi-box tests: Debian's nats-server with JetStream on a free loopback
 * port and a temporary store, and `deno task worker` processes whose stderr lines can be
 * waited on. Nothing here sleeps-then-asserts: every wait is on a condition, with a generous
 * limit for a loaded machine.
 */
import { ROOT, waitFor } from "./lab_harness.ts";
import { freePort, startNats } from "./nats_harness.ts";
import type { JsMsg } from "@nats-io/jetstream";
import { decodeRecord } from "../server/runs/records.ts";
import type { BodyRecord } from "../server/runs/records.ts";
import { type LabNats, RECORDS_STREAM, recordsSubject } from "../server/cluster/nats.ts";

/** Whether nats-server is installed (CI installs Debian's `nats-server`). */
export function natsServerInstalled(): boolean {
  try {
    return new Deno.Command("nats-server", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

export const NATS_MISSING =
  "nats-server is not installed: apt-get install nats-server (Debian ships 2.9 with JetStream)";

export interface NatsServer {
  url: string;
  stop(): Promise<void>;
}

export { freePort };

/** Starts nats-server on `port` (default: a free one) with a new temporary store. */
export async function startNatsServer(port = freePort()): Promise<NatsServer> {
  const server = await startNats(port);
  return { url: server.url, stop: () => server.close() };
}

export interface WorkerProcess {
  child: Deno.ChildProcess;
  /** stderr lines so far. */
  lines: string[];
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  kill(signal: Deno.Signal): void;
  status: Promise<Deno.CommandStatus>;
}

/** `deno run server/worker_main.ts --nats=URL …flags` (the task minus its build step). */
export function startWorkerProcess(url: string, flags: string[]): WorkerProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}server/worker_main.ts`, `--nats=${url}`, ...flags],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  (async () => {
    let buf = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    }
    if (buf) lines.push(buf);
  })();
  const status = child.status;
  return {
    child,
    lines,
    status,
    async waitForLine(re, timeoutMs = 30_000) {
      await waitFor(
        () => lines.some((l) => re.test(l)),
        `worker line ${re} (got: ${lines.join(" | ")})`,
        timeoutMs,
      );
      return lines.find((l) => re.test(l))!;
    },
    kill(signal) {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
    },
  };
}

export interface PublishedRecord {
  record: BodyRecord;
  headers: Record<string, string>;
}

/**
 * A run's records as the stream holds them, from the first, until `done` says so (an
 * ordered consumer, as an outside subscriber would read them).
 */
export async function readRecords(
  lab: LabNats,
  run: string,
  done: (records: PublishedRecord[]) => boolean,
  timeoutMs = 45_000,
): Promise<PublishedRecord[]> {
  const consumer = await lab.js.consumers.get(RECORDS_STREAM, {
    filter_subjects: recordsSubject(run),
  });
  const out: PublishedRecord[] = [];
  const messages = await consumer.consume();
  const timer = setTimeout(() => messages.stop(), timeoutMs);
  try {
    for await (const m of messages as AsyncIterable<JsMsg>) {
      const headers: Record<string, string> = {};
      for (const k of m.headers?.keys() ?? []) headers[k] = m.headers!.get(k);
      out.push({ record: decodeRecord<BodyRecord>(m.data), headers });
      if (done(out)) break;
    }
  } finally {
    clearTimeout(timer);
    await messages.close().catch(() => {});
  }
  if (!done(out)) {
    throw new Error(`run ${run}: ${out.length} records after ${timeoutMs} ms, not yet done`);
  }
  return out;
}

/** Done once the record sequence holds a terminal status. */
export function hasEnded(records: PublishedRecord[]): boolean {
  return records.some((r) =>
    r.record.type === "status" && r.record.seq > 0 &&
    ["finished", "failed", "stopped"].includes(r.record.status)
  );
}
