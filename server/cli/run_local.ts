/**
 * `lab run` on this machine: opens the kernels in a worker, drives the run, prints a live
 * progress line (or JSON Lines with --json) and, with --out=DIR, writes the run log.
 */
import type { RunSpec } from "../experiments/types.ts";
import { getExperiment } from "../experiments/registry.ts";
import { openWorkerSession } from "../engine/worker_session.ts";
import { resolveBackend } from "../engine/open.ts";
import { driveRun } from "../runs/driver.ts";
import { RunRecorder } from "../runs/recorder.ts";
import { RUNLOG_SUFFIX, RunLogWriter } from "../runs/runlog.ts";
import { type HeaderRecord, RUNLOG_FORMAT, RUNLOG_VERSION } from "../runs/records.ts";
import { newRunId } from "../runs/ids.ts";
import { codeVersion } from "../version.ts";
import { recordToJson } from "../runs/export.ts";
import { formatProgress } from "./progress.ts";

export interface LocalRunOptions {
  json: boolean;
  out?: string;
  quiet?: boolean;
  chunkMs?: number;
}

const encoder = new TextEncoder();
function writeOut(text: string) {
  Deno.stdout.writeSync(encoder.encode(text));
}
function writeErr(text: string) {
  Deno.stderr.writeSync(encoder.encode(text));
}

export async function runLocal(spec: RunSpec, opts: LocalRunOptions): Promise<number> {
  const exp = getExperiment(spec.experiment);
  const chosen = await resolveBackend(spec.backend, spec.experiment);
  const session = await openWorkerSession({ ...spec, backend: chosen.name });
  const id = newRunId(spec.experiment);
  const header: HeaderRecord = {
    type: "header",
    format: RUNLOG_FORMAT,
    version: RUNLOG_VERSION,
    id,
    spec,
    code_version: codeVersion(),
    backend: session.backend,
    adapter: session.adapter,
    created: new Date().toISOString(),
    metrics: exp.metrics.map((m) => m.name),
    frames: (exp.frames ?? []).map((f) => f.name),
  };
  let log: RunLogWriter | undefined;
  if (opts.out) {
    await Deno.mkdir(opts.out, { recursive: true });
    log = await RunLogWriter.create(`${opts.out}/${id}${RUNLOG_SUFFIX}`, header);
  }
  const recorder = new RunRecorder(header, log);
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  const started = performance.now();
  const tty = !opts.json && !opts.quiet && Deno.stderr.isTerminal();
  let lastPrint = 0;
  recorder.listen((records) => {
    for (const r of records) {
      if (opts.json) {
        if (r.type === "snapshot") {
          writeOut(
            JSON.stringify({
              type: "snapshot",
              step: r.step,
              wall_ms: r.wall_ms,
              metrics: recordToJson(r.metrics),
            }) + "\n",
          );
        } else if (r.type === "event") {
          writeOut(JSON.stringify({ type: "event", event: r.event }) + "\n");
        }
      } else if (!opts.quiet && r.type === "event") {
        writeErr(
          `${tty ? "\r\x1b[2K" : ""}event at step ${r.event.step}: ${JSON.stringify(r.event)}\n`,
        );
      }
    }
    if (!opts.json && !opts.quiet && recorder.latest) {
      const now = performance.now();
      if (now - lastPrint > (tty ? 100 : 2000) || recorder.step >= spec.steps) {
        lastPrint = now;
        const line = formatProgress(recorder.latest, spec, (now - started) / 1000, header.metrics);
        writeErr(tty ? `\r\x1b[2K${line}` : line + "\n");
      }
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
  }
  if (tty) writeErr("\n");
  const latest = recorder.latest;
  if (opts.json) {
    writeOut(
      JSON.stringify({
        type: "summary",
        experiment: spec.experiment,
        id,
        spec,
        code_version: header.code_version,
        backend: session.backend,
        adapter: session.adapter,
        status: result.status,
        ...(result.error ? { error: result.error } : {}),
        step: result.step,
        metrics: latest ? recordToJson(latest.metrics) : {},
        steps_per_second: result.stepsPerSecond,
      }) + "\n",
    );
  } else if (!opts.quiet) {
    writeErr(
      `${result.status} at step ${result.step} on ${session.backend} (${session.adapter}), ${
        result.stepsPerSecond.toFixed(0)
      } steps/s\n`,
    );
    if (result.error) writeErr(`error: ${result.error}\n`);
  }
  if (log) writeErr(`run log: ${log.path}\n`);
  return result.status === "finished" ? 0 : result.status === "stopped" ? 130 : 1;
}
