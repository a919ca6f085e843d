/**
 * A KernelSession whose kernels run in a Worker: the main thread (server, CLI) only sends
 * "advance to step S" and receives snapshots, so HTTP and WebSocket traffic stay responsive
 * while a run computes.
 */
import type {
  AdvanceOptions,
  AdvanceResult,
  BackendName,
  KernelSession,
  RunSpec,
  SessionState,
  SnapshotColumns,
} from "../experiments/types.ts";
import type { WorkerReply, WorkerRequest } from "./worker.ts";
import { columnBuffers, recycleColumnBuffers } from "./snapshot_columns.ts";

/**
 * Hands columns a session reported, once nobody reads them, to this thread's spare buffers
 * (snapshot_columns.ts): its next ColumnBuilder or merge writes into them instead of fresh
 * memory. A Worker's columns arrive transferred and stay in this thread: they are not sent
 * back (a full suite run twice ended in a glibc heap-corruption abort at process exit while
 * buffers went back to workers; see docs/storage.md). The caller must not read them again.
 */
export function recycleColumns(c: SnapshotColumns): void {
  recycleColumnBuffers(columnBuffers(c));
}

/** Opens a session in a new Worker, at step 0 or continuing from `state` (see openSession). */
export async function openWorkerSession(
  spec: RunSpec,
  state?: SessionState,
): Promise<KernelSession> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  // deno-lint-ignore no-explicit-any
  const pending = new Map<number, { resolve(r: any): void; reject(e: Error): void }>();
  let nextId = 1;
  let step = 0;
  let fatal: Error | undefined;

  const opened = new Promise<{ backend: string; adapter: string }>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<WorkerReply>) => {
      const msg = e.data;
      if (msg.op === "opened") {
        step = msg.step; // a session opened from a checkpoint starts there
        resolve(msg);
      } else if (msg.op === "advanced") {
        step = msg.step;
        pending.get(msg.id)?.resolve(msg.result);
        pending.delete(msg.id);
      } else if (msg.op === "exported") {
        pending.get(msg.id)?.resolve(msg.state);
        pending.delete(msg.id);
      } else if (msg.op === "error") {
        const err = new Error(msg.message);
        if (msg.id !== undefined && pending.has(msg.id)) {
          pending.get(msg.id)!.reject(err);
          pending.delete(msg.id);
        } else reject(err);
      }
    };
    worker.onerror = (e) => {
      e.preventDefault();
      fatal = new Error(`kernel worker crashed: ${e.message}`);
      reject(fatal);
      for (const p of pending.values()) p.reject(fatal);
      pending.clear();
    };
  });
  worker.postMessage({ op: "open", spec, state } satisfies WorkerRequest);
  let info;
  try {
    info = await opened;
  } catch (e) {
    worker.terminate();
    throw e;
  }
  let disposed = false;
  function request<T>(message: (id: number) => WorkerRequest): Promise<T> {
    if (fatal) return Promise.reject(fatal);
    if (disposed) return Promise.reject(new Error("session disposed"));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage(message(id));
    });
  }
  const session: KernelSession = {
    backend: info.backend as BackendName,
    adapter: info.adapter,
    // The worker takes requests one at a time, in order (worker.ts).
    pipelined: true,
    get step() {
      return step;
    },
    advance(target: number, options?: AdvanceOptions) {
      return request<AdvanceResult>((id) => ({ op: "advance", id, target, options }));
    },
    /** Resolves to null where the session in the worker has no exportState(). */
    exportState() {
      return request<SessionState | null>((id) => ({ op: "export", id }));
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      try {
        worker.postMessage({ op: "dispose" } satisfies WorkerRequest);
      } catch { /* already gone */ }
      // Give the worker a moment to release device buffers, then make sure it is gone.
      setTimeout(() => worker.terminate(), 200);
    },
  };
  return session;
}
