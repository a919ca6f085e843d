/**
 * `lab run` on this machine: opens the kernels in a worker, drives the run, prints a live
 * progress line (or JSON Lines with --json) and, with --out=DIR, writes the run log.
 */
import type { RunSpec } from "../experiments/types.ts";
import { openWorkerSession } from "../engine/worker_session.ts";
import { resolveBackend } from "../engine/open.ts";
import { driveRun } from "../runs/driver.ts";
import { RunRecorder } from "../runs/recorder.ts";
import type { RunLogWriter } from "../runs/runlog.ts";
import { foldRecords, RunStore, type StoredRun } from "../runs/store.ts";
import { newRunHeader } from "../runs/header.ts";
import { newRunId } from "../runs/ids.ts";
import { RunOutput, writeErr } from "./run_output.ts";

export interface LocalRunOptions {
  json: boolean;
  out?: string;
  quiet?: boolean;
  chunkMs?: number;
}

export async function runLocal(spec: RunSpec, opts: LocalRunOptions): Promise<number> {
  const chosen = await resolveBackend(spec.backend, spec.experiment);
  const session = await openWorkerSession({ ...spec, backend: chosen.name });
  const id = newRunId(spec.experiment);
  const header = newRunHeader(id, spec, session.backend, session.adapter);
  let log: RunLogWriter | undefined;
  let store: RunStore | undefined;
  let stored: StoredRun | undefined;
  if (opts.out) {
    // The server's store: the same log, index and catalogue entry a served run gets.
    store = await RunStore.openRunsDir(opts.out);
    ({ run: stored, writer: log } = await store.create(header));
  }
  const recorder = new RunRecorder(header, log);
  if (stored) recorder.listen((records) => foldRecords(stored.state, records));
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  const started = performance.now();
  const out = new RunOutput(opts);
  recorder.listen((records) => {
    let snapshots = 0;
    for (const r of records) {
      if (r.type === "snapshot") {
        out.snapshot(r);
        snapshots++;
      } else if (r.type === "event") out.event(r.event);
    }
    // Only new snapshots move the line (a status record alone would print the last one again).
    if (snapshots > 0 && recorder.latest) {
      const elapsedS = (performance.now() - started) / 1000;
      out.progress(recorder.latest, spec, elapsedS, header.metrics, recorder.step >= spec.steps);
    }
  });
  let result;
  try {
    result = await driveRun(session, spec, recorder, {
      chunkMs: opts.chunkMs,
      signal: controller.signal,
    });
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await session.dispose();
    log?.close();
    if (store && stored) await store.finish(stored);
  }
  out.summary({
    experiment: spec.experiment,
    id,
    spec,
    code_version: header.code_version,
    backend: session.backend,
    adapter: session.adapter,
    status: result.status,
    error: result.error,
    step: result.step,
    metrics: recorder.latest?.metrics ?? {},
    steps_per_second: result.stepsPerSecond,
  });
  if (log) writeErr(`run log: ${log.path}\n`);
  return result.status === "finished" ? 0 : result.status === "stopped" ? 130 : 1;
}
