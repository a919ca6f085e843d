/**
 * What `lab run` prints, whether the run computes here or on a lab it follows (--server):
 * with --json, JSON Lines on stdout (snapshots, events, then one summary); otherwise a live
 * progress line, event lines and a closing line on stderr. One module, so the two stay the
 * same format that scripts parse.
 */
import type { RunEvent, RunSpec } from "../experiments/types.ts";
import type { SnapshotRecord } from "../runs/records.ts";
import { recordToJson } from "../runs/export.ts";
import { formatProgress } from "./progress.ts";
import { formatNumber, readableJson } from "./numbers.ts";
import type { SweepInfo } from "../experiments/sweep.ts";

const encoder = new TextEncoder();

/**
 * Writes all of `text`; when the reader has gone (`lab run --json | head -1`) the command ends
 * at once and quietly, with status 0, as a pipeline's reader asked.
 */
function writeAll(file: typeof Deno.stdout, text: string): void {
  const bytes = encoder.encode(text);
  try {
    for (let off = 0; off < bytes.length;) off += file.writeSync(bytes.subarray(off));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) Deno.exit(0);
    throw e;
  }
}
export const writeOut = (text: string) => writeAll(Deno.stdout, text);
export const writeErr = (text: string) => writeAll(Deno.stderr, text);

export interface RunSummary {
  experiment: string;
  id: string;
  /** The lab followed, for remote runs. */
  server?: string;
  spec: RunSpec;
  code_version?: string;
  backend?: string;
  adapter?: string;
  status: string;
  error?: string;
  step: number;
  metrics: Record<string, Float32Array>;
  steps_per_second: number;
  /** Workers the run's replicas were split across (local runs; --threads). */
  threads?: number;
  /** The replicas' settings when the run is a sweep. */
  sweep?: SweepInfo;
}

export class RunOutput {
  /** A terminal gets one rewritten progress line; a pipe gets a line every 2 s. */
  readonly tty: boolean;
  #lastPrint = 0;

  constructor(readonly opts: { json: boolean; quiet?: boolean }) {
    this.tty = !opts.json && !opts.quiet && Deno.stderr.isTerminal();
  }

  get human(): boolean {
    return !this.opts.json && !this.opts.quiet;
  }

  snapshot(s: Pick<SnapshotRecord, "step" | "wall_ms" | "metrics">): void {
    if (!this.opts.json) return;
    writeOut(
      JSON.stringify({
        type: "snapshot",
        step: s.step,
        wall_ms: s.wall_ms,
        metrics: recordToJson(s.metrics),
      }) + "\n",
    );
  }

  event(event: RunEvent): void {
    if (this.opts.json) writeOut(JSON.stringify({ type: "event", event }) + "\n");
    else if (!this.opts.quiet) {
      writeErr(`${this.clear()}event at step ${event.step}: ${readableJson(event)}\n`);
    }
  }

  /** The progress line, at most every 100 ms on a terminal (2 s otherwise) unless forced. */
  progress(
    snap: SnapshotRecord,
    spec: RunSpec,
    elapsedS: number,
    metrics: string[],
    force = false,
  ): void {
    if (!this.human) return;
    const now = performance.now();
    if (!force && now - this.#lastPrint <= (this.tty ? 100 : 2000)) return;
    this.#lastPrint = now;
    const line = formatProgress(snap, spec, elapsedS, metrics);
    writeErr(this.tty ? `${this.clear()}${line}` : line + "\n");
  }

  /** A line for people (never in --json or --quiet output). */
  note(text: string): void {
    if (this.human) writeErr(`${this.clear()}${text}\n`);
  }

  /** Ends the progress line, then the JSON summary or the closing line. */
  summary(s: RunSummary): void {
    if (this.tty) writeErr("\n");
    if (this.opts.json) {
      const { experiment, id, server, error, metrics, ...rest } = s;
      const { sweep: _, ...spec } = rest.spec;
      const sweep = s.sweep ?? rest.spec.sweep;
      writeOut(
        JSON.stringify({
          type: "summary",
          experiment,
          id,
          ...(server ? { server } : {}),
          ...(spec.name ? { name: spec.name } : {}),
          tags: spec.tags ?? [],
          spec,
          ...(sweep
            ? { sweep_params: sweep.params, seeds: sweep.seeds, settings: sweep.settings }
            : {}),
          code_version: rest.code_version,
          backend: rest.backend,
          adapter: rest.adapter,
          status: rest.status,
          ...(error ? { error } : {}),
          step: rest.step,
          metrics: recordToJson(metrics),
          steps_per_second: rest.steps_per_second,
          ...(rest.threads ? { threads: rest.threads } : {}),
        }) + "\n",
      );
    } else if (!this.opts.quiet) {
      writeErr(
        `${s.status} at step ${s.step} on ${s.backend} (${s.adapter}${
          s.threads && s.threads > 1 ? `, ${s.threads} threads` : ""
        }), ${formatNumber(s.steps_per_second, 3)} steps/s\n`,
      );
      if (s.error) writeErr(`error: ${s.error}\n`);
    }
  }

  /** Erases a live progress line before other text on a terminal. */
  clear(): string {
    return this.tty ? "\r\x1b[2K" : "";
  }
}
