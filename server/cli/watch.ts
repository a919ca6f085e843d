/**
 * `lab watch [--server=URL] [RUN]`: live progress of a lab's runs in a terminal.
 * With RUN: that run's progress line and events until it ends (exit 0 if it finished).
 * Without: a table of every run, redrawn in place on a terminal (a line per change when
 * piped), until Ctrl-C; `--once` prints the table and exits.
 */
import type { RunSpec } from "../experiments/types.ts";
import type { SnapshotRecord } from "../runs/records.ts";
import type { RunSummary } from "../runs/manager.ts";
import { Subscriber } from "../../client/subscriber.ts";
import { formatProgress } from "./progress.ts";
import { UsageError } from "./args.ts";
import { LabHttp } from "./lab_http.ts";
import { formatNumber, readableJson } from "./numbers.ts";

export interface WatchOptions {
  server: string;
  token?: string;
  run?: string;
  once?: boolean;
}

const encoder = new TextEncoder();
const out = (text: string) => Deno.stdout.writeSync(encoder.encode(text));
const TERMINAL = new Set(["finished", "failed", "stopped", "interrupted"]);

export function watch(opts: WatchOptions): Promise<number> {
  return opts.run ? watchOne(opts, opts.run) : watchAll(opts);
}

/** Waits for Ctrl-C (or for `until` to settle), then removes the listener. */
async function untilInterrupted<T>(until: Promise<T>): Promise<T | "interrupted"> {
  const { promise, resolve } = Promise.withResolvers<"interrupted">();
  const onSignal = () => resolve("interrupted");
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    return await Promise.race([until, promise]);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
  }
}

async function watchOne(opts: WatchOptions, id: string): Promise<number> {
  const http = new LabHttp(opts.server, opts.token);
  const detail = await http.run(id).catch((e) => {
    throw e instanceof UsageError && /no run with id/.test(e.message)
      ? new UsageError(`no run ${id} on ${opts.server} (see: deno task lab watch --once)`)
      : e;
  });
  const spec = detail.spec;
  const tty = Deno.stdout.isTerminal();
  const line = (snap: Pick<SnapshotRecord, "step" | "wall_ms" | "metrics">) =>
    formatProgress(snap as SnapshotRecord, spec, snap.wall_ms / 1000, detail.metrics);
  const show = (text: string) => out(tty ? `\r\x1b[2K${text}` : text + "\n");
  out(`${id}: ${spec.experiment} on ${detail.backend} (${detail.adapter}), ${detail.status}\n`);
  if (detail.latest) show(line(detail.latest));
  if (TERMINAL.has(detail.status)) {
    if (tty) out("\n");
    if (detail.error) out(`error: ${detail.error}\n`);
    return detail.status === "finished" ? 0 : 1;
  }

  const { promise: ended, resolve: end } = Promise.withResolvers<string>();
  let lastPrint = 0;
  const sub = new Subscriber({
    url: opts.server,
    token: opts.token,
    runs: [id],
    frames: false,
    since: { [id]: -1 }, // live only: the detail above already showed where it is
    onHello: (h) => {
      // It may have ended between the detail request and the subscription.
      if (TERMINAL.has(h.status)) {
        out(`${tty ? "\n" : ""}${h.status} at step ${h.step}\n`);
        end(h.status);
      }
    },
    onSnapshot: (s) => {
      const now = performance.now();
      if (now - lastPrint >= (tty ? 100 : 2000) || s.step >= spec.steps) {
        lastPrint = now;
        show(line(s));
      }
    },
    onEvent: (e) =>
      out(`${tty ? "\r\x1b[2K" : ""}event at step ${e.event.step}: ${readableJson(e.event)}\n`),
    onStatus: (s) => {
      if (!TERMINAL.has(s.status)) return;
      out(`${tty ? "\n" : ""}${s.status} at step ${s.step}${s.error ? `: ${s.error}` : ""}\n`);
      end(s.status);
    },
    onRemoved: () => end("removed"),
  });
  const result = await untilInterrupted(ended);
  sub.close();
  return result === "finished" ? 0 : result === "interrupted" ? 130 : 1;
}

interface Row {
  id: string;
  experiment: string;
  status: string;
  step: number;
  steps: number;
  backend: string;
  rate: number;
  metric?: string;
}

function rowOf(r: RunSummary): Row {
  return {
    id: r.id,
    experiment: r.experiment,
    // A damaged log shows in the listing: "finished (3 damaged)".
    status: r.damaged ? `${r.status} (${r.damaged.records} damaged)` : r.status,
    step: r.step,
    steps: r.steps,
    backend: r.backend,
    rate: 0,
  };
}

function meanText(name: string, values: ArrayLike<number>): string {
  let s = 0, n = 0;
  for (let i = 0; i < values.length; i++) if (Number.isFinite(values[i])) s += values[i], n++;
  return `${name}=${n ? formatNumber(s / n) : "NaN"}`;
}

export function formatTable(rows: Row[]): string {
  if (rows.length === 0) return "no runs yet\n";
  const lines = rows.map((r) => {
    // Only a finished run is done: a failed one that diverged at its last step is not 100%.
    const pct = r.status !== "finished" && TERMINAL.has(r.status) && r.step >= r.steps
      ? "     -"
      : `${(r.steps > 0 ? (100 * r.step / r.steps).toFixed(1) : "100.0").padStart(5)}%`;
    return [
      r.id.padEnd(42),
      r.status.padEnd(11),
      `${r.step}/${r.steps}`.padStart(22),
      pct,
      r.backend.padEnd(9),
      r.rate ? `${formatNumber(r.rate, 3)} steps/s` : "",
      r.metric ?? "",
    ].join("  ").trimEnd();
  });
  return lines.join("\n") + "\n";
}

async function watchAll(opts: WatchOptions): Promise<number> {
  const http = new LabHttp(opts.server, opts.token);
  const rows = new Map<string, Row>();
  for (const r of await http.runs()) rows.set(r.id, rowOf(r));
  if (opts.once) {
    out(formatTable([...rows.values()]));
    return 0;
  }
  const tty = Deno.stdout.isTerminal();
  let dirty = true;
  const changed = (row: Row, statusChange: boolean) => {
    dirty = true;
    if (!tty && statusChange) out(`${row.id} ${row.status} at step ${row.step}/${row.steps}\n`);
  };
  const sub = new Subscriber({
    url: opts.server,
    token: opts.token,
    runs: "*",
    frames: false,
    // Known runs: live records only; runs created from now on arrive in full.
    since: Object.fromEntries([...rows.keys()].map((id) => [id, -1])),
    onHello: (h) => {
      if (!rows.has(h.run)) {
        const spec: RunSpec = h.header.spec;
        rows.set(h.run, {
          id: h.run,
          experiment: spec.experiment,
          status: h.status,
          step: h.step,
          steps: spec.steps,
          backend: h.header.backend,
          rate: 0,
        });
      }
    },
    onSnapshot: (s) => {
      const row = rows.get(s.run);
      if (!row) return;
      row.step = s.step;
      row.rate = s.wall_ms > 0 ? s.step / (s.wall_ms / 1000) : 0;
      const [name, values] = Object.entries(s.metrics)[0] ?? [];
      if (name) row.metric = meanText(name, values);
      changed(row, false);
    },
    onStatus: (s) => {
      const row = rows.get(s.run);
      if (!row) return;
      row.status = s.status;
      row.step = Math.max(row.step, s.step);
      changed(row, true);
    },
    onRemoved: (m) => {
      rows.delete(m.run);
      dirty = true;
    },
  });
  const redraw = () => {
    if (tty && dirty) {
      dirty = false;
      out(`\x1b[H\x1b[2J${opts.server} (Ctrl-C to quit)\n\n${formatTable([...rows.values()])}`);
    } else if (!tty) {
      const running = [...rows.values()].filter((r) => r.status === "running");
      if (running.length) out(formatTable(running));
    }
  };
  if (!tty) out(formatTable([...rows.values()]));
  const timer = setInterval(redraw, tty ? 250 : 5000);
  try {
    await untilInterrupted(new Promise<never>(() => {}));
  } finally {
    clearInterval(timer);
    sub.close();
  }
  return 0;
}
