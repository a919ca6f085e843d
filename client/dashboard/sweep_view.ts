/**
 * The sweep view: a metric against a swept parameter (each seed a point, each setting's
 * mean a line with its min–max band over seeds; log axis where the parameter was swept on
 * a log scale, categories for `algo`), or over two parameters a heatmap (mean over seeds per
 * cell, colour bar, the value in a tooltip). At the final step, at the step under the time
 * charts' cursor, or each seed's best so far. Drawn on one canvas whose cost follows the
 * number of settings, not of steps. CSV and PNG (2×) export; its choices live in the URL.
 */
import { clear, download, fmt, h } from "./dom.ts";
import { logTicks } from "./log_ticks.ts";
import { prepareCanvas } from "./panels/canvas.ts";
import { formatValue, paramSymbol, type SweepValue } from "./settings.ts";
import type { ViewState } from "./state.ts";
import {
  type AxisKind,
  axisKind,
  type Heatmap,
  largerIsBetter,
  paramValues,
  SWEEP_AT,
  type SweepAt,
  sweepCsv,
  sweepHeatmap,
  sweepLines,
  sweepParams,
  type SweepPoint,
  sweepPoints,
  type SweepSource,
} from "./sweep_data.ts";
import { sequentialColour } from "./colours.ts";
import { withAlpha } from "./charts.ts";
import { type Palette, runColour } from "./theme.ts";

export interface SweepHost {
  setSweep(patch: Partial<ViewState["sweep"]>): void;
}

export interface SweepInput {
  sources: SweepSource[];
  metrics: string[];
  /** Per metric: whether its values are drawn on a log axis. */
  logMetric(metric: string): boolean;
  /** Parameters' scales from the runs' sweeps (log or linear). */
  scales: Record<string, "log" | "linear">;
  cursorStep: number | null;
}

const HEIGHT = 280;
const PAD = { left: 62, right: 16, top: 12, bottom: 40 };
const BAR_W = 14, BAR_GAP = 14, BAR_LABELS = 52;
const EXPORT_RATIO = 2;

/** A position map for one axis: value → pixel, with its tick values and labels. */
interface Axis {
  kind: AxisKind;
  pos(v: SweepValue): number;
  ticks: { at: number; text: string }[];
}

function niceLinearTicks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

/** An axis over numbers (linear or log, padded) or categories (evenly spaced). */
function makeAxis(
  kind: AxisKind,
  values: SweepValue[],
  from: number,
  to: number,
  room: number,
): Axis {
  if (kind === "category") {
    const n = values.length;
    const pos = (v: SweepValue) => from + ((values.indexOf(v) + 0.5) / n) * (to - from);
    return { kind, pos, ticks: values.map((v) => ({ at: pos(v), text: formatValue(v) })) };
  }
  const nums = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  let lo = nums.length ? Math.min(...nums) : 0, hi = nums.length ? Math.max(...nums) : 1;
  const log = kind === "log";
  const t = (v: number) => (log ? Math.log10(v) : v);
  let a = t(lo), b = t(hi);
  if (!(b > a)) {
    [a, b] = [a - (log ? 0.5 : Math.abs(a) * 0.1 || 1), b + (log ? 0.5 : Math.abs(b) * 0.1 || 1)];
  }
  const pad = (b - a) * 0.06;
  a -= pad;
  b += pad;
  lo = log ? 10 ** a : a;
  hi = log ? 10 ** b : b;
  const pos = (v: SweepValue) => from + ((t(v as number) - a) / (b - a)) * (to - from);
  const tickValues = log ? logTicks(lo, hi, 3, Math.max(2, room)) : niceLinearTicks(lo, hi, room);
  return { kind, pos, ticks: tickValues.map((v) => ({ at: pos(v), text: fmt(v) })) };
}

export class SweepView {
  readonly el: HTMLElement;
  private controls = h("div.sweep-controls");
  private canvas = h("canvas.sweep-canvas");
  private tooltip = h("div.sweep-tooltip", { hidden: true });
  private message = h("div.sweep-message");
  private width = 0;
  private resize: ResizeObserver;
  private input: SweepInput | null = null;
  private view: ViewState["sweep"] | null = null;
  private palette: Palette | null = null;
  private controlsKey = "";
  private drawnKey = "";
  /** What was drawn, for tooltips, tests and exports. */
  private drawn: {
    metric: string;
    x: string;
    y: string | null;
    at: SweepAt;
    points: SweepPoint[];
    heatmap: Heatmap | null;
    lines: ReturnType<typeof sweepLines>;
    ticks: { x: number; y: number };
    xKind: AxisKind;
    hits: { x: number; y: number; w: number; h: number; text: string }[];
  } | null = null;

  constructor(private readonly host: SweepHost) {
    const body = h("div.sweep-body", {}, this.canvas, this.tooltip);
    this.el = h(
      "section.chart-card.sweep-card",
      { "data-panel": "sweep" },
      h(
        "header.chart-head",
        {},
        h(
          "div.chart-title",
          {},
          h("span.metric-name", {}, "sweep"),
          h("span.metric-doc", {}, "a metric against the swept parameters"),
        ),
        h(
          "div.chart-actions",
          {},
          h("button.chip", {
            title: "download the values shown as CSV",
            "data-action": "sweep-csv",
            onclick: () => this.exportCsv(),
          }, "CSV"),
          h("button.chip", {
            title: "download the view as PNG (2×)",
            "data-action": "sweep-png",
            onclick: () => this.exportPng(),
          }, "PNG"),
        ),
      ),
      this.controls,
      this.message,
      body,
    );
    this.resize = new ResizeObserver((entries) => {
      const w = Math.floor(entries[0].contentRect.width);
      if (w !== this.width) {
        this.width = w;
        this.drawnKey = "";
        this.redraw();
      }
    });
    this.resize.observe(body);
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => (this.tooltip.hidden = true));
  }

  update(input: SweepInput, view: ViewState["sweep"], palette: Palette): void {
    this.input = input;
    this.view = view;
    this.palette = palette;
    this.redraw();
  }

  destroy(): void {
    this.resize.disconnect();
    this.el.remove();
  }

  /** The resolved choice: the view's, or defaults from what the runs offer. */
  private choice() {
    const input = this.input!, v = this.view!;
    const params = sweepParams(input.sources);
    const metric = v.metric && input.metrics.includes(v.metric) ? v.metric : input.metrics[0];
    const x = v.x && params.includes(v.x) ? v.x : params[0];
    const y = v.y && params.includes(v.y) && v.y !== x ? v.y : null;
    return { metric, x, y, at: v.at, params };
  }

  private redraw(): void {
    if (!this.input || !this.view || !this.palette) return;
    const c = this.choice();
    this.renderControls(c);
    const key = JSON.stringify([
      c,
      this.width,
      this.palette.name,
      c.at === "cursor" ? this.input.cursorStep : null,
      this.input.sources.map((s) => [s.run, s.series.version]),
    ]);
    if (key === this.drawnKey) return;
    this.drawnKey = key;
    if (!c.metric || !c.x) {
      this.message.textContent = "no swept parameter among the runs shown";
      this.drawn = null;
      return;
    }
    const points = sweepPoints(this.input.sources, c.metric, c.at, this.input.cursorStep);
    let heatmap: Heatmap | null = null;
    this.message.textContent = "";
    if (c.y) {
      const hm = sweepHeatmap(points, c.x, c.y);
      if (typeof hm === "string") this.message.textContent = hm;
      else heatmap = hm;
    }
    const lines = sweepLines(points, c.x);
    this.drawn = {
      metric: c.metric,
      x: c.x,
      y: heatmap ? c.y : null,
      at: c.at,
      points,
      heatmap,
      lines,
      ticks: { x: 0, y: 0 },
      xKind: "linear",
      hits: [],
    };
    const ctx = prepareCanvas(this.canvas, Math.max(200, this.width || 600), HEIGHT);
    this.paint(ctx, Math.max(200, this.width || 600), HEIGHT);
  }

  private renderControls(c: ReturnType<SweepView["choice"]>): void {
    const key = JSON.stringify([c, this.input!.metrics]);
    if (key === this.controlsKey) return;
    this.controlsKey = key;
    clear(this.controls);
    const select = (
      name: string,
      options: [string, string][],
      current: string,
      set: (v: string) => void,
    ) => {
      const el = h(
        "select",
        { name, onchange: () => set(el.value) },
        ...options.map(([v, t]) => h("option", { value: v }, t)),
      );
      el.value = current;
      return el;
    };
    const paramOptions = c.params.map((p) => [p, paramSymbol(p)] as [string, string]);
    this.controls.append(
      h(
        "label",
        {},
        "metric ",
        select(
          "sweep-metric",
          this.input!.metrics.map((m) => [m, m]),
          c.metric ?? "",
          (v) => this.host.setSweep({ metric: v }),
        ),
      ),
      h(
        "label",
        {},
        "x ",
        select("sweep-x", paramOptions, c.x ?? "", (v) => this.host.setSweep({ x: v })),
      ),
      h(
        "label",
        {},
        "heatmap y ",
        select(
          "sweep-y",
          [["", "—"], ...paramOptions.filter(([p]) => p !== c.x)],
          c.y ?? "",
          (v) => this.host.setSweep({ y: v || null }),
        ),
      ),
      h(
        "div.segmented",
        { "data-control": "sweep-at" },
        ...SWEEP_AT.map((a) =>
          h(`button${a === c.at ? ".on" : ""}`, {
            "data-value": a,
            title: a === "final"
              ? "the last snapshot"
              : a === "cursor"
              ? "the step under the time charts' cursor"
              : `each seed's ${largerIsBetter(c.metric ?? "") ? "largest" : "smallest"} so far`,
            onclick: () => this.host.setSweep({ at: a }),
          }, a === "final" ? "final" : a === "cursor" ? "at cursor" : "best so far")
        ),
      ),
    );
  }

  /** Draws the chart or the heatmap into a context whose units are CSS pixels. */
  private paint(ctx: CanvasRenderingContext2D, W: number, H: number): void {
    const d = this.drawn!, p = this.palette!, input = this.input!;
    d.hits = [];
    ctx.fillStyle = p.card;
    ctx.fillRect(0, 0, W, H);
    ctx.font = "11px system-ui, sans-serif";
    const right = W - PAD.right - (d.heatmap ? BAR_W + BAR_GAP + BAR_LABELS : 0);
    const plot = { l: PAD.left, r: right, t: PAD.top, b: H - PAD.bottom };
    if (plot.r - plot.l < 40) return;
    // A heatmap's cells are equal-width categories; a chart keeps the parameter's scale.
    const xKind = d.heatmap ? "category" : axisKind(d.points, d.x, input.scales);
    d.xKind = xKind;
    const xAxis = makeAxis(
      xKind,
      paramValues(d.points, d.x),
      plot.l,
      plot.r,
      Math.floor((plot.r - plot.l) / 70),
    );
    let yAxis: Axis;
    const logY = input.logMetric(d.metric) &&
      d.points.every((q) => !Number.isFinite(q.value) || q.value > 0);
    if (d.heatmap) {
      yAxis = makeAxis(
        "category",
        [...d.heatmap.ys].reverse(),
        plot.t,
        plot.b,
        0,
      );
    } else {
      const vals = d.points.map((q) => q.value).filter(Number.isFinite);
      yAxis = makeAxis(
        logY ? "log" : "linear",
        vals.length ? [Math.min(...vals), Math.max(...vals)] : [0, 1],
        plot.b,
        plot.t,
        Math.floor((plot.b - plot.t) / 40),
      );
    }
    // Grid and tick labels.
    ctx.strokeStyle = p.grid;
    ctx.fillStyle = p.axis;
    ctx.lineWidth = 1;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of xAxis.ticks) {
      if (t.at < plot.l - 0.5 || t.at > plot.r + 0.5) continue;
      if (!d.heatmap) {
        ctx.beginPath();
        ctx.moveTo(Math.round(t.at) + 0.5, plot.t);
        ctx.lineTo(Math.round(t.at) + 0.5, plot.b);
        ctx.stroke();
      }
      ctx.fillText(t.text, t.at, plot.b + 4);
    }
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of yAxis.ticks) {
      if (t.at < plot.t - 0.5 || t.at > plot.b + 0.5) continue;
      if (!d.heatmap) {
        ctx.beginPath();
        ctx.moveTo(plot.l, Math.round(t.at) + 0.5);
        ctx.lineTo(plot.r, Math.round(t.at) + 0.5);
        ctx.stroke();
      }
      ctx.fillText(t.text, plot.l - 5, t.at);
    }
    d.ticks = {
      x: xAxis.ticks.filter((t) => t.at >= plot.l - 0.5 && t.at <= plot.r + 0.5).length,
      y: yAxis.ticks.filter((t) => t.at >= plot.t - 0.5 && t.at <= plot.b + 0.5).length,
    };
    // Axis titles.
    const step = d.points.length ? d.points[0].step : null;
    const atText = d.at === "best" ? "best so far" : `at step ${step ?? "–"}`;
    ctx.fillStyle = p.panelTitle;
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText(
      `${paramSymbol(d.x)}${xKind === "log" ? " (log)" : ""}   ·   ${
        d.heatmap ? `cells: ${d.metric} ${atText}, mean over seeds` : `${d.metric} ${atText}`
      }`,
      (plot.l + plot.r) / 2,
      H - 2,
    );
    ctx.save();
    ctx.translate(11, (plot.t + plot.b) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle";
    ctx.fillText(
      d.heatmap ? paramSymbol(d.y!) : `${d.metric}${logY ? " (log)" : ""}`,
      0,
      0,
    );
    ctx.restore();
    if (d.heatmap) this.paintHeatmap(ctx, d.heatmap, xAxis, yAxis, plot, logY);
    else this.paintLines(ctx, xAxis, yAxis);
  }

  private paintLines(ctx: CanvasRenderingContext2D, xAxis: Axis, yAxis: Axis): void {
    const d = this.drawn!, p = this.palette!;
    const Y = (v: number) => yAxis.pos(v);
    d.lines.forEach((line, i) => {
      const colour = runColour(i, p);
      const xs = line.stats.map((s) => xAxis.pos(s.x));
      // Band: min–max over the setting's seeds.
      const band = line.stats.map((s, k) => [xs[k], s.lo, s.hi] as const).filter(([, lo, hi]) =>
        Number.isFinite(lo) && Number.isFinite(hi)
      );
      if (band.length > 1) {
        ctx.fillStyle = withAlpha(colour, p.bandAlpha + 0.05);
        ctx.beginPath();
        band.forEach(([x, , hi], k) => (k ? ctx.lineTo(x, Y(hi)) : ctx.moveTo(x, Y(hi))));
        for (let k = band.length - 1; k >= 0; k--) ctx.lineTo(band[k][0], Y(band[k][1]));
        ctx.closePath();
        ctx.fill();
      } else if (band.length === 1) {
        ctx.strokeStyle = withAlpha(colour, 0.5);
        ctx.lineWidth = 6;
        ctx.beginPath();
        ctx.moveTo(band[0][0], Y(band[0][1]));
        ctx.lineTo(band[0][0], Y(band[0][2]));
        ctx.stroke();
      }
      // Mean line over settings.
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.75;
      ctx.beginPath();
      let started = false;
      line.stats.forEach((s, k) => {
        if (!Number.isFinite(s.mean)) return (started = false);
        if (started) ctx.lineTo(xs[k], Y(s.mean));
        else ctx.moveTo(xs[k], Y(s.mean));
        started = true;
      });
      ctx.stroke();
      // Seeds as points.
      ctx.fillStyle = colour;
      line.stats.forEach((s, k) => {
        for (const v of s.seeds) {
          if (!Number.isFinite(v)) continue;
          ctx.beginPath();
          ctx.arc(xs[k], Y(v), 2.6, 0, 2 * Math.PI);
          ctx.fill();
        }
        d.hits.push({
          x: xs[k] - 6,
          y: Math.min(Y(s.hi), Y(s.lo)) - 6,
          w: 12,
          h: Math.abs(Y(s.hi) - Y(s.lo)) + 12,
          text: `${line.label ? line.label + " · " : ""}${paramSymbol(d.x)}=${formatValue(s.x)}: ${
            fmt(s.mean)
          } (mean of ${s.seeds.length}; min ${fmt(s.lo)}, max ${fmt(s.hi)})`,
        });
      });
      if (line.label && xs.length) {
        ctx.textAlign = "left";
        ctx.textBaseline = "bottom";
        ctx.fillText(line.label, xs[xs.length - 1] + 4, Y(line.stats[line.stats.length - 1].mean));
      }
    });
  }

  private paintHeatmap(
    ctx: CanvasRenderingContext2D,
    hm: Heatmap,
    xAxis: Axis,
    yAxis: Axis,
    plot: { l: number; r: number; t: number; b: number },
    logValues: boolean,
  ): void {
    const d = this.drawn!, p = this.palette!;
    const finite = hm.cells.map((c) => c.mean).filter(Number.isFinite);
    const lo = finite.length ? Math.min(...finite) : 0,
      hi = finite.length ? Math.max(...finite) : 1;
    const t = (v: number) => (logValues ? Math.log10(v) : v);
    const frac = (v: number) => (t(hi) > t(lo) ? (t(v) - t(lo)) / (t(hi) - t(lo)) : 0.5);
    const cw = (plot.r - plot.l) / hm.xs.length, ch = (plot.b - plot.t) / hm.ys.length;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (const c of hm.cells) {
      const cx = xAxis.pos(c.x), cy = yAxis.pos(c.y);
      const x0 = cx - cw / 2, y0 = cy - ch / 2;
      ctx.fillStyle = Number.isFinite(c.mean) ? sequentialColour(frac(c.mean), p.name) : p.grid;
      ctx.fillRect(x0 + 1, y0 + 1, cw - 2, ch - 2);
      const text = `${paramSymbol(d.x)}=${formatValue(c.x)} · ${paramSymbol(d.y!)}=${
        formatValue(c.y)
      }: ${fmt(c.mean)} (mean of ${c.seeds.length} seeds; min ${fmt(c.lo)}, max ${fmt(c.hi)})`;
      d.hits.push({ x: x0, y: y0, w: cw, h: ch, text });
      if (cw >= 44 && ch >= 16) {
        ctx.fillStyle = frac(c.mean) > 0.55 === (p.name === "light") ? "#111418" : "#f4f5f7";
        ctx.fillText(fmt(c.mean), cx, cy);
      }
    }
    // Colour bar.
    const bx = plot.r + BAR_GAP, steps = 48;
    for (let i = 0; i < steps; i++) {
      ctx.fillStyle = sequentialColour(1 - (i + 0.5) / steps, p.name);
      const y = plot.t + ((plot.b - plot.t) * i) / steps;
      ctx.fillRect(bx, y, BAR_W, (plot.b - plot.t) / steps + 1);
    }
    ctx.fillStyle = p.axis;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const barTicks = logValues && lo > 0
      ? logTicks(lo, hi, 2, 5)
      : niceLinearTicks(lo, hi, 4).filter((v) => v >= lo && v <= hi);
    const barY = (v: number) => plot.b - frac(v) * (plot.b - plot.t);
    // The ends are labelled with the extremes; inner ticks only where they do not crowd them.
    const inner = barTicks.filter((v) =>
      v > lo && v < hi && barY(v) < barY(lo) - 14 && barY(v) > barY(hi) + 14
    );
    for (const v of [lo, ...inner, hi]) ctx.fillText(fmt(v), bx + BAR_W + 4, barY(v));
  }

  private hover(e: MouseEvent): void {
    const d = this.drawn;
    if (!d) return;
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left, y = e.clientY - r.top;
    const hit = d.hits.find((b) => x >= b.x && x <= b.x + b.w && y >= b.y && y <= b.y + b.h);
    if (!hit) {
      this.tooltip.hidden = true;
      return;
    }
    this.tooltip.hidden = false;
    this.tooltip.textContent = hit.text;
    this.tooltip.style.left = `${Math.min(x + 12, r.width - 260)}px`;
    this.tooltip.style.top = `${y + 12}px`;
  }

  /** Read-only view for tests: the choice, the numbers drawn, tick counts. */
  debug() {
    const d = this.drawn;
    if (!d) return null;
    return {
      metric: d.metric,
      x: d.x,
      y: d.y,
      at: d.at,
      steps: [...new Set(d.points.map((q) => q.step))],
      cells: d.heatmap?.cells.map((c) => ({ x: c.x, y: c.y, mean: c.mean, n: c.seeds.length })) ??
        null,
      lines: d.lines.map((l) => ({
        label: l.label,
        stats: l.stats.map((s) => ({
          x: s.x,
          mean: s.mean,
          lo: s.lo,
          hi: s.hi,
          n: s.seeds.length,
        })),
      })),
      ticks: d.ticks,
      xAxis: d.xKind,
      message: this.message.textContent,
      tooltip: this.tooltip.hidden ? "" : this.tooltip.textContent,
    };
  }

  csv(): string {
    return this.drawn ? sweepCsv(this.drawn.points, this.drawn.metric) : "";
  }

  private exportCsv(): void {
    if (this.drawn) {
      download(`sweep-${this.drawn.metric}.csv`, new Blob([this.csv()], { type: "text/csv" }));
    }
  }

  /** The view redrawn at 2× into a fresh canvas, as a PNG blob. */
  png(): Promise<Blob | null> {
    if (!this.drawn) return Promise.resolve(null);
    const W = Math.max(200, this.width || 600);
    const out = document.createElement("canvas");
    out.width = W * EXPORT_RATIO;
    out.height = HEIGHT * EXPORT_RATIO;
    const ctx = out.getContext("2d")!;
    ctx.setTransform(EXPORT_RATIO, 0, 0, EXPORT_RATIO, 0, 0);
    const hits = this.drawn.hits;
    this.paint(ctx, W, HEIGHT);
    this.drawn.hits = hits;
    return new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }

  private async exportPng(): Promise<void> {
    const blob = await this.png();
    if (blob && this.drawn) download(`sweep-${this.drawn.metric}.png`, blob);
  }
}
