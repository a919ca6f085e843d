/**
 * `lab run EXPERIMENT ... --server=URL`: submits the run to a running lab and follows it on
 * the stream, printing what a local run prints (progress line, or JSON Lines with --json and
 * a final summary). Ctrl-C stops the remote run; a second Ctrl-C detaches and leaves it be.
 */
import type { RunSpec } from "../experiments/types.ts";
import type { HeaderRecord, SnapshotRecord } from "../runs/records.ts";
import { Subscriber } from "../../client/subscriber.ts";
import { RunOutput, writeErr } from "./run_output.ts";
import { UsageError } from "./args.ts";
import { LabHttp } from "./lab_http.ts";

export interface RemoteRunOptions {
  server: string;
  token?: string;
  json: boolean;
  quiet?: boolean;
}

const TERMINAL = new Set(["finished", "failed", "stopped", "interrupted"]);

/** `spec` is `body` validated here (so mistakes are caught before any request). */
export async function runRemote(
  spec: RunSpec,
  body: Record<string, unknown>,
  opts: RemoteRunOptions,
): Promise<number> {
  const http = new LabHttp(opts.server, opts.token);
  const id = await http.submit(body);
  const out = new RunOutput(opts);
  out.note(`submitted ${id} to ${opts.server}`);

  let header: HeaderRecord | undefined;
  let latest: SnapshotRecord | undefined;
  const { promise: ended, resolve: end } = Promise.withResolvers<
    { status: string; step: number; error?: string }
  >();
  // The run's own compute clock, so the rate is right even when watched from afar.
  const progress = (force: boolean) => {
    if (latest && header) out.progress(latest, spec, latest.wall_ms / 1000, header.metrics, force);
  };

  const sub = new Subscriber({
    url: opts.server,
    token: opts.token,
    runs: [id],
    frames: false,
    onHello: (h) => header = h.header,
    onSnapshot: (s) => {
      latest = s;
      out.snapshot(s);
      progress(s.step >= spec.steps);
    },
    onEvent: (e) => out.event(e.event),
    onSkipped: (s) => out.note(`(skipped records ${s.from_seq}..${s.to_seq})`),
    onStatus: (s) => {
      if (TERMINAL.has(s.status)) end(s);
    },
    onError: (e) => writeErr(`error from the lab: ${e.message}\n`),
    onConnection: (state, info) => {
      // On stderr even with --json (stdout stays JSON Lines); only --quiet silences it.
      if (state === "closed" && !opts.quiet) {
        writeErr(`${out.clear()}lost the stream (${info?.code} ${info?.reason}); reconnecting\n`);
      }
    },
  });

  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts === 1) {
      writeErr(`${out.tty ? "\n" : ""}stopping ${id} (Ctrl-C again to detach)\n`);
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
  out.summary({
    experiment: spec.experiment,
    id,
    server: opts.server,
    spec,
    code_version: header?.code_version,
    backend: header?.backend,
    adapter: header?.adapter,
    status: result.status,
    error: result.error,
    step: result.step,
    metrics: latest?.metrics ?? {},
    steps_per_second: latest && latest.wall_ms > 0 ? latest.step / (latest.wall_ms / 1000) : 0,
    sweep: header?.sweep,
  });
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
