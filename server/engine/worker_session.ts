/**
 * A KernelSession whose kernels run in a Worker: the main thread (server, CLI) only sends
 * "advance to step S" and receives snapshots, so HTTP and WebSocket traffic stay responsive
 * while a run computes.
 */
import type { AdvanceResult, BackendName, KernelSession, RunSpec } from "../experiments/types.ts";
import type { WorkerReply, WorkerRequest } from "./worker.ts";

export async function openWorkerSession(spec: RunSpec): Promise<KernelSession> {
  const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  const pending = new Map<number, { resolve(r: AdvanceResult): void; reject(e: Error): void }>();
  let nextId = 1;
  let step = 0;
  let fatal: Error | undefined;

  const opened = new Promise<{ backend: string; adapter: string }>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<WorkerReply>) => {
      const msg = e.data;
      if (msg.op === "opened") resolve(msg);
      else if (msg.op === "advanced") {
        step = msg.step;
        pending.get(msg.id)?.resolve(msg.result);
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
  worker.postMessage({ op: "open", spec } satisfies WorkerRequest);
  let info;
  try {
    info = await opened;
  } catch (e) {
    worker.terminate();
    throw e;
  }
  let disposed = false;
  return {
    backend: info.backend as BackendName,
    adapter: info.adapter,
    get step() {
      return step;
    },
    advance(target: number) {
      if (fatal) return Promise.reject(fatal);
      if (disposed) return Promise.reject(new Error("session disposed"));
      const id = nextId++;
      return new Promise<AdvanceResult>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        worker.postMessage({ op: "advance", id, target } satisfies WorkerRequest);
      });
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
}
