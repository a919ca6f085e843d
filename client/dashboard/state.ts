/**
 * The view's state, and its URL form: runs shown, metrics, axes, smoothing, replicas, the
 * zoomed x window and the theme all live in the query string, so a URL reproduces what one
 * sees. Pure functions; main.ts writes the URL with history.replaceState on every change.
 */
import { THEME_CHOICES, type ThemeChoice } from "./theme.ts";
import { SWEEP_AT, type SweepAt } from "./sweep_data.ts";

export type XAxis = "step" | "wall";

export interface ViewState {
  /** Run ids shown; null means every run. */
  runs: string[] | null;
  /** Metric charts shown, in order; null means every metric of the shown runs. */
  metrics: string[] | null;
  /** Per-metric y scale chosen by the user; metrics absent use the experiment's suggestion. */
  ylog: Record<string, boolean>;
  x: XAxis;
  xlog: boolean;
  /** EMA factor β in [0, 0.999]. */
  smoothing: number;
  /** Draw each replica as well as the mean and band. */
  replicas: boolean;
  /** Zoomed x window in the x axis' units, or null for everything. */
  zoom: [number, number] | null;
  /** Colour theme; "auto" follows the system's prefers-color-scheme. */
  theme: ThemeChoice;
  /**
   * The sweep view: the metric, the parameter along x, a second parameter for a heatmap,
   * and at which step (null: the view's own choice, the first metric and parameters).
   */
  sweep: { metric: string | null; x: string | null; y: string | null; at: SweepAt };
}

export function defaultState(): ViewState {
  return {
    runs: null,
    metrics: null,
    ylog: {},
    x: "step",
    xlog: false,
    smoothing: 0.6,
    replicas: false,
    zoom: null,
    theme: "auto",
    sweep: { metric: null, x: null, y: null, at: "final" },
  };
}

const list = (v: string | null) => (v === null ? null : v === "" ? [] : v.split(","));

export function stateFromQuery(query: string): ViewState {
  const p = new URLSearchParams(query);
  const s = defaultState();
  s.runs = list(p.get("runs"));
  s.metrics = list(p.get("metrics"));
  for (const item of list(p.get("y")) ?? []) {
    const [name, scale] = item.split(":");
    if (name && (scale === "log" || scale === "lin")) s.ylog[name] = scale === "log";
  }
  if (p.get("x") === "wall") s.x = "wall";
  s.xlog = p.get("xscale") === "log";
  const smoothing = Number(p.get("smooth"));
  if (p.has("smooth") && Number.isFinite(smoothing)) {
    s.smoothing = Math.min(0.999, Math.max(0, smoothing));
  }
  s.replicas = p.get("replicas") === "1";
  const zoom = (list(p.get("zoom")) ?? []).map(Number);
  if (zoom.length === 2 && zoom.every(Number.isFinite) && zoom[0] < zoom[1]) {
    s.zoom = [zoom[0], zoom[1]];
  }
  const theme = p.get("theme");
  if (THEME_CHOICES.includes(theme as ThemeChoice)) s.theme = theme as ThemeChoice;
  const at = p.get("sweep_at");
  s.sweep = {
    metric: p.get("sweep") || null,
    x: p.get("sweep_x") || null,
    y: p.get("sweep_y") || null,
    at: SWEEP_AT.includes(at as SweepAt) ? at as SweepAt : "final",
  };
  return s;
}

/** Only what differs from the defaults is written, so shared URLs stay short. */
export function stateToQuery(s: ViewState): string {
  const d = defaultState();
  const p = new URLSearchParams();
  if (s.runs !== null) p.set("runs", s.runs.join(","));
  if (s.metrics !== null) p.set("metrics", s.metrics.join(","));
  const y = Object.entries(s.ylog).map(([m, log]) => `${m}:${log ? "log" : "lin"}`);
  if (y.length) p.set("y", y.join(","));
  if (s.x !== d.x) p.set("x", s.x);
  if (s.xlog) p.set("xscale", "log");
  if (s.smoothing !== d.smoothing) p.set("smooth", String(s.smoothing));
  if (s.replicas) p.set("replicas", "1");
  if (s.zoom) p.set("zoom", s.zoom.map((v) => Number(v.toPrecision(8))).join(","));
  if (s.theme !== d.theme) p.set("theme", s.theme);
  if (s.sweep.metric) p.set("sweep", s.sweep.metric);
  if (s.sweep.x) p.set("sweep_x", s.sweep.x);
  if (s.sweep.y) p.set("sweep_y", s.sweep.y);
  if (s.sweep.at !== d.sweep.at) p.set("sweep_at", s.sweep.at);
  // Commas and colons read better unescaped and are safe in a query string.
  return p.toString().replaceAll("%2C", ",").replaceAll("%3A", ":");
}
