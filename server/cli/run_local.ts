/**
 * `lab run` on this machine: opens the kernels in a worker, drives the run, prints a live
 * progress line (or JSON Lines with --json) and, with --out=DIR, writes the run log and a
 * checkpoint beside it (every --checkpoint-interval seconds of compute, and on SIGINT or
 * SIGTERM); `lab resume LOG` continues such a run.
 */
import { dirname } from "node:path";
import type { BackendName, KernelSession, RunSpec } from "../experiments/types.ts";
import { defaultCliThreads, openThreadedSession } from "../engine/threaded_session.ts";
import { openSession, resolveBackend } from "../engine/open.ts";
import { driveRun, SHUTDOWN } from "../runs/driver.ts";
import { expandSnapshots, type HeaderRecord, snapshotCount } from "../runs/records.ts";
import {
  checkpointPathFor,
  DEFAULT_CHECKPOINT_INTERVAL_MS,
  removeCheckpoint,
  saveRunCheckpoint,
} from "../runs/checkpoints.ts";
import { planResume, startResumed } from "../runs/resume.ts";
import { UsageError } from "./args.ts";
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
  /** With --out: compute time between checkpoints (default 60 s; 0: none). */
  checkpointIntervalMs?: number;
  /** Workers the run's replicas are split across (--threads; default every core). */
  threads?: number;
}

export async function runLocal(spec: RunSpec, opts: LocalRunOptions): Promise<number> {
  const chosen = await resolveBackend(spec.backend, spec.experiment);
  const session = await openThreadedSession({ ...spec, backend: chosen.name }, undefined, {
    threads: opts.threads ?? defaultCliThreads(),
    single: openSession,
  });
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
  return await driveLocal(
    session,
    header,
    recorder,
    log,
    opts,
    store && stored ? { store, run: stored } : undefined,
  );
}

/**
 * `lab resume PATH`: continues a run written with --out from its checkpoint beside the log
 * (or from step 0 without one), appending to the same log through the store of its directory;
 * on the backend it ran on when that is available here, else on the best one available.
 */
export async function resumeLocal(path: string, opts: LocalRunOptions): Promise<number> {
  const store = await RunStore.openRunsDir(dirname(path));
  const stored = await store.load(path);
  const ended = stored.state.status;
  if (ended === "finished" || ended === "stopped") {
    throw new UsageError(`the run in ${path} is ${ended}: nothing to resume`);
  }
  const plan = await planResume(store, stored, (m) => writeErr(`warning: ${m}\n`));
  const spec = plan.header.spec;
  const backend = await resolveBackend(plan.header.backend as BackendName, spec.experiment)
    .catch(() => resolveBackend("auto", spec.experiment));
  const session = await openThreadedSession(
    { ...spec, backend: backend.name },
    plan.checkpoint?.state,
    { threads: opts.threads ?? defaultCliThreads(), single: openSession },
  );
  const log = await store.reopen(stored);
  const recorder = new RunRecorder(plan.header, log);
  stored.state.error = undefined;
  stored.state.ended = undefined;
  recorder.listen((records) => foldRecords(stored.state, records));
  startResumed(recorder, plan, "resumed by hand (lab resume)");
  return await driveLocal(
    session,
    plan.header,
    recorder,
    log,
    { ...opts, out: path },
    { store, run: stored },
    { diverged: plan.checkpoint?.diverged ?? [] },
  );
}

async function driveLocal(
  session: KernelSession,
  header: HeaderRecord,
  recorder: RunRecorder,
  log: RunLogWriter | undefined,
  opts: LocalRunOptions,
  stored?: { store: RunStore; run: StoredRun },
  resume?: { diverged: number[] },
): Promise<number> {
  const spec = header.spec;
  const id = header.id;
  const controller = new AbortController();
  // With a log, an interrupt checkpoints first (then `lab resume` continues the run).
  const onSignal = () => controller.abort(log ? SHUTDOWN : undefined);
  Deno.addSignalListener("SIGINT", onSignal);
  if (log) Deno.addSignalListener("SIGTERM", onSignal);
  const started = performance.now();
  const out = new RunOutput(opts);
  recorder.listen((records) => {
    let snapshots = 0;
    // Blocks become snapshots one by one only for --json, which prints each.
    for (const r of opts.json ? expandSnapshots(records) : records) {
      snapshots += snapshotCount(r);
      if (r.type === "snapshot") out.snapshot(r);
      else if (r.type === "event") out.event(r.event);
    }
    // Only new snapshots move the line (a status record alone would print the last one again).
    if (snapshots > 0 && recorder.latest) {
      const elapsedS = (performance.now() - started) / 1000;
      out.progress(recorder.latest, spec, elapsedS, header.metrics, recorder.step >= spec.steps);
    }
  });
  const ckptPath = log ? checkpointPathFor(log.path) : undefined;
  const interval = opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  let result;
  try {
    result = await driveRun(session, spec, recorder, {
      chunkMs: opts.chunkMs,
      signal: controller.signal,
      checkpoint: ckptPath && interval > 0
        ? { intervalMs: interval, save: (c) => saveRunCheckpoint(ckptPath, id, c) }
        : undefined,
      resume,
    });
    if (ckptPath && (result.status === "finished" || result.status === "stopped")) {
      await removeCheckpoint(ckptPath);
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    if (log) Deno.removeSignalListener("SIGTERM", onSignal);
    await session.dispose();
    log?.close();
    if (stored) await stored.store.finish(stored.run);
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
    threads: session.threads ?? 1,
    sweep: header.sweep,
  });
  if (log) writeErr(`run log: ${log.path}\n`);
  if (result.status === "interrupted") writeErr(`resume with: deno task lab resume ${log!.path}\n`);
  return result.status === "finished"
    ? 0
    : result.status === "stopped" || result.status === "interrupted"
    ? 130
    : 1;
}
