/// <reference lib="deno.worker" />
/**
 * Worker side of the off-main-thread session: opens a KernelSession here and answers
 * advance/dispose requests, so kernels never block the server's event loop.
 */
import type { AdvanceOptions, AdvanceResult, RunSpec, SessionState } from "../experiments/types.ts";
import { openSession } from "./open.ts";
import { columnBuffers, inAskedForm } from "./snapshot_columns.ts";
import type { KernelSession } from "../experiments/types.ts";

export type WorkerRequest =
  | { op: "open"; spec: RunSpec; state?: SessionState }
  | { op: "advance"; id: number; target: number; options?: AdvanceOptions }
  | { op: "export"; id: number }
  /** Buffers of columns this worker sent, which the main thread no longer reads (reused). */
  | { op: "dispose" };

export type WorkerReply =
  | { op: "opened"; backend: string; adapter: string; step: number }
  | { op: "advanced"; id: number; result: AdvanceResult; step: number }
  | { op: "exported"; id: number; state: SessionState | null }
  | { op: "error"; id?: number; message: string };

let session: KernelSession | undefined;
let replicas = 0;

/**
 * The buffers a result's arrays own, moved to the main thread instead of copied. Sessions copy
 * every array out of wasm memory (which cannot be transferred) before they report it.
 */
function transferables(result: AdvanceResult): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const s of result.snapshots) {
    for (const a of Object.values(s.metrics)) buffers.add(a.buffer as ArrayBuffer);
  }
  if (result.columns) { for (const b of columnBuffers(result.columns)) buffers.add(b); }
  for (const f of result.frames) buffers.add(f.values.buffer as ArrayBuffer);
  return [...buffers];
}

/**
 * Requests are handled one after the other, in the order sent: a request that arrives while
 * an advance is awaited (a pipelined caller asks for the next call early) waits its turn, so
 * no session ever sees two calls at once and replies come in request order.
 */
let queue: Promise<void> = Promise.resolve();
self.onmessage = (e: MessageEvent<WorkerRequest>) => {
  queue = queue.then(() => handle(e.data));
};

async function handle(msg: WorkerRequest): Promise<void> {
  try {
    if (msg.op === "open") {
      session = await openSession(msg.spec, msg.state);
      replicas = msg.spec.replicas;
      self.postMessage(
        {
          op: "opened",
          backend: session.backend,
          adapter: session.adapter,
          step: session.step,
        } satisfies WorkerReply,
      );
    } else if (msg.op === "advance") {
      if (!session) throw new Error("session not open");
      // Columns asked for cross as a few buffers, whatever form the session reported.
      const result = inAskedForm(
        await session.advance(msg.target, msg.options),
        msg.options,
        replicas,
      );
      self.postMessage(
        { op: "advanced", id: msg.id, result, step: session.step } satisfies WorkerReply,
        transferables(result),
      );
    } else if (msg.op === "export") {
      if (!session) throw new Error("session not open");
      const state = session.exportState ? await session.exportState() : null;
      self.postMessage(
        { op: "exported", id: msg.id, state } satisfies WorkerReply,
        state ? Object.values(state.arrays).map((a) => a.buffer as ArrayBuffer) : [],
      );
    } else if (msg.op === "dispose") {
      await session?.dispose();
      session = undefined;
      self.close();
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    self.postMessage(
      { op: "error", id: "id" in msg ? msg.id : undefined, message } satisfies WorkerReply,
    );
  }
}
