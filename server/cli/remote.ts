/**
 * `lab run EXPERIMENT ... --server=URL`: submits the run to a running lab and follows it on
 * the stream, printing what a local run prints (progress line, or JSON Lines with --json and
 * a final summary). Ctrl-C stops the remote run; a second Ctrl-C detaches and leaves it be.
 */
import type { RunSpec } from "../experiments/types.ts";
import { recordToJson } from "../runs/export.ts";
import type { HeaderRecord, SnapshotRecord } from "../runs/records.ts";
import { Subscriber } from "../../client/subscriber.ts";
import { formatProgress } from "./progress.ts";
import { UsageError } from "./args.ts";
import { LabHttp } from "./lab_http.ts";

export interface RemoteRunOptions {
  server: string;
  token?: string;
  json: boolean;
  quiet?: boolean;
}

const encoder = new TextEncoder();
const writeOut = (text: string) => Deno.stdout.writeSync(encoder.encode(text));
const writeErr = (text: string) => Deno.stderr.writeSync(encoder.encode(text));

const TERMINAL = new Set(["finished", "failed", "stopped", "interrupted"]);

export async function runRemote(spec: RunSpec, opts: RemoteRunOptions): Promise<number> {
  const http = new LabHttp(opts.server, opts.token);
  const id = await http.submit(spec);
  const tty = !opts.json && !opts.quiet && Deno.stderr.isTerminal();
  if (!opts.json && !opts.quiet) writeErr(`submitted ${id} to ${opts.server}\n`);

  let header: HeaderRecord | undefined;
  let latest: SnapshotRecord | undefined;
  let lastPrint = 0;
  const { promise: ended, resolve: end } = Promise.withResolvers<
    { status: string; step: number; error?: string }
  >();
  const progress = (force: boolean) => {
    if (opts.json || opts.quiet || !latest || !header) return;
    const now = performance.now();
    if (!force && now - lastPrint < (tty ? 100 : 2000)) return;
    lastPrint = now;
    // The run's own compute clock, so the rate is right even when watched from afar.
    const line = formatProgress(latest, spec, latest.wall_ms / 1000, header.metrics);
    writeErr(tty ? `\r\x1b[2K${line}` : line + "\n");
  };

  const sub = new Subscriber({
    url: opts.server,
    token: opts.token,
    runs: [id],
    frames: false,
    onHello: (h) => header = h.header,
    onSnapshot: (s) => {
      latest = s;
      if (opts.json) {
        writeOut(
          JSON.stringify({
            type: "snapshot",
            step: s.step,
            wall_ms: s.wall_ms,
            metrics: recordToJson(s.metrics),
          }) + "\n",
        );
      }
      progress(s.step >= spec.steps);
    },
    onEvent: (e) => {
      if (opts.json) writeOut(JSON.stringify({ type: "event", event: e.event }) + "\n");
      else if (!opts.quiet) {
        writeErr(
          `${tty ? "\r\x1b[2K" : ""}event at step ${e.event.step}: ${JSON.stringify(e.event)}\n`,
        );
      }
    },
    onSkipped: (s) => {
      if (!opts.json && !opts.quiet) writeErr(`(skipped records ${s.from_seq}..${s.to_seq})\n`);
    },
    onStatus: (s) => {
      if (TERMINAL.has(s.status)) end(s);
    },
    onError: (e) => writeErr(`error from the lab: ${e.message}\n`),
    onConnection: (state, info) => {
      if (state === "closed" && !opts.quiet) {
        writeErr(
          `${
            tty ? "\r\x1b[2K" : ""
          }lost the stream (${info?.code} ${info?.reason}); reconnecting\n`,
        );
      }
    },
  });

  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1) {
      writeErr(`${tty ? "\n" : ""}stopping ${id} (Ctrl-C again to detach)\n`);
      http.stop(id).catch((e) => writeErr(`could not stop: ${e.message}\n`));
    } else end({ status: "detached", step: latest?.step ?? 0 });
  };
  Deno.addSignalListener("SIGINT", onSignal);
  let result;
  try {
    result = await ended;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    sub.close();
  }
  progress(true);
  if (tty) writeErr("\n");
  const stepsPerSecond = latest && latest.wall_ms > 0 ? latest.step / (latest.wall_ms / 1000) : 0;
  if (opts.json) {
    writeOut(
      JSON.stringify({
        type: "summary",
        experiment: spec.experiment,
        id,
        server: opts.server,
        spec,
        code_version: header?.code_version,
        backend: header?.backend,
        adapter: header?.adapter,
        status: result.status,
        ...(result.error ? { error: result.error } : {}),
        step: result.step,
        metrics: latest ? recordToJson(latest.metrics) : {},
        steps_per_second: stepsPerSecond,
      }) + "\n",
    );
  } else if (!opts.quiet) {
    writeErr(
      `${result.status} at step ${result.step} on ${header?.backend} (${header?.adapter}), ${
        stepsPerSecond.toFixed(0)
      } steps/s\n`,
    );
    if (result.error) writeErr(`error: ${result.error}\n`);
  }
  return result.status === "finished"
    ? 0
    : result.status === "stopped" || result.status === "detached"
    ? 130
    : 1;
}

/** `--server` and `--token` flags (token also from LAB_TOKEN). */
export function serverFlags(
  flags: Map<string, string | true>,
): { server?: string; token?: string } {
  const server = flags.get("server");
  const token = flags.get("token");
  if (server === true) {
    throw new UsageError("--server needs a URL, e.g. --server=http://gpu-box:8420");
  }
  if (token === true) throw new UsageError("--token needs a value");
  return { server, token: token ?? Deno.env.get("LAB_TOKEN") ?? undefined };
}
