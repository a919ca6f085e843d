/**
 * One uPlot chart per metric, every shown run overlaid in its colour: the replicas' mean
 * (bold; smoothed when smoothing is on, with the raw mean faint beneath), a min–max band
 * over replicas, and each replica on demand. Events are vertical markers, labelled where
 * the labels do not collide (event_labels.ts); the legend names the events under the cursor.
 * Colours come from the theme's palette (theme.ts). Drag selects a window, the wheel zooms
 * around the cursor, shift+wheel pans, a double click resets; the zoom is shared by all
 * charts and lives in the URL.
 */
import uPlot from "uplot";
import type { RunEvent } from "../../server/experiments/types.ts";
import { type Aligned, type Bucketed, bucketGroup, type Group, joinGroups } from "./chart_data.ts";
import type { RunSeries } from "./series.ts";
import type { ViewState } from "./state.ts";
import { clear, download, fmt, fmtDuration, fmtSteps, h } from "./dom.ts";
import { eventDescription, eventLabel, nearestMarkers, placeLabels } from "./event_labels.ts";
import { type Palette, PALETTES } from "./theme.ts";
import { filterLogSplits } from "./log_ticks.ts";

/** One line of a run: its replicas' summary, or a sweep setting's (mean over its seeds). */
export interface LineStyle {
  label: string;
  colour: string;
  /** Canvas dash pattern in CSS px ([] solid). */
  dash: number[];
}

export interface ChartRun {
  id: string;
  label: string;
  colour: string;
  /** One per replica group of the series (sweep settings); absent: one line, the run's. */
  lines?: LineStyle[];
  series: RunSeries;
  /** The server's re-bucketed rows for the current zoom window, when they have arrived. */
  window: RunSeries | null;
  events: RunEvent[];
}

export interface ChartHost {
  setZoom(zoom: [number, number] | null): void;
  setYLog(metric: string, log: boolean): void;
  /** The x value under the cursor (null when it leaves), for views that follow it. */
  cursorAt?(x: number | null): void;
}

export type SeriesKind = "lo" | "hi" | "raw" | "smooth" | "replica";

export interface SeriesMeta {
  run: string;
  /** Line (replica group) of the run this series belongs to. */
  line: number;
  kind: SeriesKind;
  replica?: number;
  label: string;
}

export function withAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

const axisStyle = (p: Palette) => ({
  stroke: p.axis,
  grid: { stroke: p.grid, width: 1 },
  ticks: { stroke: p.tick, width: 1, size: 4 },
  font: "11px system-ui, -apple-system, 'Segoe UI', sans-serif",
});

/**
 * Event labels: rows of text in a strip above the plot area (never over the data), their
 * height, and the cursor's reach.
 */
const LABEL_ROWS = 3, LABEL_ROW_PX = 12, LABEL_FONT_PX = 10, MARKER_REACH_PX = 5;
const LABEL_STRIP_PX = LABEL_ROWS * LABEL_ROW_PX + 2;
/** Chart height in CSS px, and the resolution PNG exports are drawn at. */
const CHART_HEIGHT = 240, EXPORT_PIXEL_RATIO = 2;

/** The lines a run draws: its sweep settings', or one line in the run's colour. */
export function runLines(run: ChartRun): LineStyle[] {
  return run.lines?.length ? run.lines : [{ label: run.label, colour: run.colour, dash: [] }];
}

/** An event marker as last drawn: x in CSS pixels from the plot's left edge. */
interface DrawnMarker {
  x: number;
  run: string;
  event: RunEvent;
  /**
   * Where its label went (top: CSS px from the plot area's top edge, negative above it), or
   * null when it was dropped for lack of room.
   */
  label: { left: number; row: number; width: number; top: number } | null;
}

/** The line (replica group) a replica belongs to. */
function settingOfReplica(s: RunSeries, r: number): number {
  const groups = s.layout.groups;
  return groups ? Math.max(0, groups.findIndex((g) => g.includes(r))) : 0;
}

export class MetricChart {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private legend: HTMLElement;
  private plot: uPlot | null = null;
  private layoutKey = "";
  private dataKey = "";
  private meta: SeriesMeta[] = [];
  private runs: ChartRun[] = [];
  private view!: ViewState;
  private ylog: boolean;
  private resize: ResizeObserver;
  private legendRows = new Map<string, HTMLElement>();
  private docEl: HTMLElement;
  private options: uPlot.Options | null = null;
  private cursorIdx: number | null = null;
  private cssWidth = 0;
  private palette: Palette = PALETTES.light;
  private markers: DrawnMarker[] = [];
  /** Label widths in CSS pixels, by text (measured once per device pixel ratio). */
  private labelWidths = new Map<string, number>();
  private labelWidthsDpr = 0;
  /** Points drawn per series on the last redraw (for tests and the pixel-width budget). */
  lastPointCount = 0;

  constructor(
    readonly metric: string,
    public doc: string,
    private suggestedLog: boolean,
    private readonly host: ChartHost,
  ) {
    this.ylog = suggestedLog;
    this.docEl = h("span.metric-doc", {}, doc);
    this.body = h("div.chart-body");
    this.legend = h("div.legend");
    const yToggle = h("button.chip", {
      title: "y axis: linear or log",
      onclick: () => this.host.setYLog(this.metric, !this.ylog),
    }, "log y");
    yToggle.dataset.role = "ylog";
    this.el = h(
      "section.chart-card",
      { "data-metric": metric },
      h(
        "header.chart-head",
        {},
        h("div.chart-title", {}, h("span.metric-name", {}, metric), this.docEl),
        h(
          "div.chart-actions",
          {},
          yToggle,
          h("button.chip", {
            title: "download the data shown as CSV",
            onclick: () => this.exportCsv(),
          }, "CSV"),
          h(
            "button.chip",
            { title: "download the chart as PNG", onclick: () => this.exportPng() },
            "PNG",
          ),
        ),
      ),
      this.body,
      this.legend,
    );
    this.resize = new ResizeObserver((entries) => this.fit(entries[0].contentRect.width));
    this.resize.observe(this.body);
  }

  /**
   * The caption and suggested scale follow the experiments of the runs shown (metric names
   * repeat across experiments with different formulas).
   */
  describe(doc: string, suggestedLog: boolean): void {
    if (doc !== this.doc) this.docEl.textContent = this.doc = doc;
    this.suggestedLog = suggestedLog;
  }

  /**
   * Rebuilds the data (and the uPlot instance when the series layout or the theme changed;
   * the zoom and the data come from the view and the runs, so a rebuild keeps them).
   */
  update(runs: ChartRun[], view: ViewState, palette: Palette): void {
    this.runs = runs;
    this.view = view;
    this.palette = palette;
    this.ylog = view.ylog[this.metric] ?? this.suggestedLog;
    this.el.querySelector<HTMLElement>("[data-role=ylog]")!.classList.toggle("on", this.ylog);
    const smoothing = view.smoothing > 0;
    const layoutKey = JSON.stringify([
      runs.map((r) => [r.id, r.colour, r.label, r.series.replicas, r.lines ?? null]),
      runs.some((r) => r.events.length > 0),
      view.replicas,
      smoothing,
      this.ylog,
      view.xlog,
      view.x,
      palette.name,
    ]);
    const dataKey = JSON.stringify([
      layoutKey,
      runs.map((r) => [r.series.version, r.window?.version ?? -1, r.events.length]),
      view.smoothing,
      view.zoom,
      this.width(),
    ]);
    if (layoutKey !== this.layoutKey || !this.plot) {
      this.layoutKey = layoutKey;
      this.build();
    } else if (dataKey === this.dataKey) return;
    this.dataKey = dataKey;
    this.setData();
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot?.destroy();
    this.el.remove();
  }

  /** Read-only view for tests: series, plotted columns and scales. */
  debug() {
    const u = this.plot;
    return {
      metric: this.metric,
      series: this.meta,
      data: u
        ? u.data.map((col) =>
          Array.from(col as ArrayLike<number | null | undefined>, (v) => v ?? null)
        )
        : [],
      scales: u
        ? {
          x: { distr: u.scales.x.distr, min: u.scales.x.min, max: u.scales.x.max },
          y: { distr: u.scales.y.distr, min: u.scales.y.min, max: u.scales.y.max },
        }
        : null,
      pointCount: this.lastPointCount,
      plotWidth: this.width(),
      theme: this.palette.name,
      /** Width of the plotting area (inside the axes) in CSS px. */
      plotAreaWidth: u ? u.bbox.width / (globalThis.devicePixelRatio || 1) : 0,
      /** Event markers drawn (x in CSS px within the plot) and where their labels went. */
      markers: this.markers.map((m) => ({
        x: m.x,
        step: m.event.step,
        type: m.event.type,
        label: m.label,
      })),
      /** The events the legend names (the cursor is near their marker). */
      legendEvent: this.legend.querySelector(".legend-event")?.textContent ?? "",
    };
  }

  /** Plot width in CSS pixels, from the ResizeObserver (reading layout here would force it). */
  get plotWidth(): number {
    return this.width();
  }

  private width(): number {
    if (!this.cssWidth) this.cssWidth = Math.floor(this.body.clientWidth);
    return Math.max(200, this.cssWidth || 600);
  }

  private fit(width: number): void {
    this.cssWidth = Math.floor(width);
    if (!this.plot) return;
    const w = this.width();
    if (Math.abs(this.plot.width - w) > 1) {
      this.plot.setSize({ width: w, height: CHART_HEIGHT });
      this.dataKey = "";
      if (this.view) this.update(this.runs, this.view, this.palette);
    }
  }

  private build(): void {
    this.plot?.destroy();
    this.plot = null;
    clear(this.body);
    const view = this.view;
    const smoothing = view.smoothing > 0;
    const series: uPlot.Series[] = [{ label: view.x === "step" ? "step" : "wall time" }];
    const bands: uPlot.Band[] = [];
    this.meta = [];
    for (const run of this.runs) {
      const smooths = smoothing && run.series.smooths(this.metric);
      runLines(run).forEach((line, g) => {
        const base = series.length;
        const dash = line.dash.length ? line.dash : undefined;
        const push = (s: uPlot.Series, m: Omit<SeriesMeta, "run" | "line">) => {
          series.push({ spanGaps: true, points: { show: false }, ...s });
          this.meta.push({ run: run.id, line: g, ...m });
        };
        push({ label: `${line.label} min`, stroke: "transparent", width: 0 }, {
          kind: "lo",
          label: "min",
        });
        push({ label: `${line.label} max`, stroke: "transparent", width: 0 }, {
          kind: "hi",
          label: "max",
        });
        bands.push({
          series: [base + 1, base],
          fill: withAlpha(line.colour, this.palette.bandAlpha),
        });
        push(
          {
            label: `${line.label} mean`,
            stroke: smooths ? withAlpha(line.colour, 0.3) : line.colour,
            width: smooths ? 1 : 1.75,
            dash,
          },
          { kind: "raw", label: "mean" },
        );
        if (smooths) {
          push({ label: `${line.label} smoothed`, stroke: line.colour, width: 1.75, dash }, {
            kind: "smooth",
            label: "smoothed mean",
          });
        }
      });
      if (view.replicas) {
        for (let r = 0; r < run.series.replicas; r++) {
          const g = settingOfReplica(run.series, r);
          const colour = runLines(run)[g]?.colour ?? run.colour;
          series.push({
            spanGaps: true,
            points: { show: false },
            label: `${run.label} r${r}`,
            stroke: withAlpha(colour, 0.55),
            width: 0.75,
          });
          this.meta.push({
            run: run.id,
            line: g,
            kind: "replica",
            replica: r,
            label: `replica ${r}`,
          });
        }
      }
    }
    const xFmt = (v: number) => (view.x === "step" ? fmtSteps(v) : fmtDuration(v));
    // Log axes: the labels log_ticks.ts chooses; other splits keep a grid line, not a label.
    const logTicks: uPlot.Axis.Filter = (u, splits, axisIdx) => {
      const scale = u.scales[axisIdx === 0 ? "x" : "y"];
      if (scale.distr !== 3 || scale.min == null || scale.max == null) return splits;
      return filterLogSplits(splits, scale.min, scale.max);
    };
    const hasEvents = this.runs.some((r) => r.events.length > 0);
    const opts: uPlot.Options = {
      width: this.width(),
      height: CHART_HEIGHT,
      series,
      bands,
      legend: { show: false },
      padding: [hasEvents ? 12 + LABEL_STRIP_PX : 12, 12, 0, 0],
      cursor: {
        sync: { key: "lab" },
        drag: { x: true, y: false, setScale: false },
        points: { show: false },
      },
      scales: {
        x: { time: false, distr: view.xlog ? 3 : 1, log: 10 },
        y: { distr: this.ylog ? 3 : 1, log: 10 },
      },
      axes: [
        {
          ...axisStyle(this.palette),
          filter: logTicks,
          values: (_u, splits) => splits.map((v) => (v === null ? "" : xFmt(v))),
        },
        {
          ...axisStyle(this.palette),
          size: 56,
          filter: logTicks,
          values: (_u, splits) => splits.map((v) => (v === null ? "" : fmt(v))),
        },
      ],
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const a = u.posToVal(u.select.left, "x"),
            b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          this.host.setZoom([a, b]);
        }],
        setCursor: [(u) => {
          this.cursorIdx = u.cursor.idx ?? null;
          this.renderLegend();
          const xs = u.data[0];
          this.host.cursorAt?.(
            this.cursorIdx !== null && this.cursorIdx < xs.length ? xs[this.cursorIdx] : null,
          );
        }],
        draw: [(u) => this.drawEvents(u)],
      },
    };
    this.options = opts;
    this.plot = new uPlot(
      opts,
      [new Float64Array(0), ...series.slice(1).map(() => [])] as uPlot.AlignedData,
      this.body,
    );
    this.installWheel(this.plot);
    this.buildLegend();
  }

  private setData(): void {
    const u = this.plot!;
    const view = this.view;
    const buckets = this.width();
    const win = {
      min: view.zoom?.[0] ?? null,
      max: view.zoom?.[1] ?? null,
      buckets,
      log: view.xlog,
    };
    const smoothing = view.smoothing > 0;
    const groups: Bucketed[] = [];
    // Which output column each series reads: [group, column].
    const order: [number, number][] = [];
    let maxPoints = 0;
    for (const run of this.runs) {
      const local = run.series;
      const detail = view.zoom && run.window ? run.window : local;
      const xOf = (s: RunSeries) => (view.x === "step" ? s.step : s.wall);
      const R = local.replicas;
      const cd = detail.cols.get(this.metric);
      const cl = local.cols.get(this.metric);
      if (!cd || !cl) {
        for (const _ of this.meta.filter((m) => m.run === run.id)) order.push([-1, 0]);
        continue;
      }
      // One group when not zoomed (detail and local rows are the same rows).
      const gd: Group = { x: xOf(detail), n: detail.n, ys: [] };
      const gl: Group = detail === local ? gd : { x: xOf(local), n: local.n, ys: [] };
      const gdIndex = groups.length, glIndex = detail === local ? gdIndex : groups.length + 1;
      const G = local.groupCount, smooths = smoothing && local.smooths(this.metric);
      for (let g = 0; g < G; g++) {
        const k = gd.ys.length;
        gd.ys.push(
          { values: cd.lo, agg: "min", stride: G, offset: g },
          { values: cd.hi, agg: "max", stride: G, offset: g },
          { values: cd.mean, agg: "last", stride: G, offset: g },
        );
        order.push([gdIndex, k], [gdIndex, k + 1], [gdIndex, k + 2]);
        if (smooths) {
          gl.ys.push({ values: cl.smooth, agg: "last", stride: G, offset: g });
          order.push([glIndex, gl.ys.length - 1]);
        }
      }
      if (view.replicas) {
        for (let r = 0; r < R; r++) {
          if (smooths) {
            gl.ys.push({ values: cl.smoothRep, agg: "last", stride: R, offset: r });
            order.push([glIndex, gl.ys.length - 1]);
          } else {
            gd.ys.push({ values: cd.last, agg: "last", stride: R, offset: r });
            order.push([gdIndex, gd.ys.length - 1]);
          }
        }
      }
      const bd = bucketGroup(gd, win);
      maxPoints = Math.max(maxPoints, bd.x.length);
      groups.push(bd);
      if (gl !== gd) {
        const bl = bucketGroup(gl, win);
        if (gl.ys.length) maxPoints = Math.max(maxPoints, bl.x.length);
        groups.push(bl);
      }
    }
    const joined = joinGroups(groups, this.ylog);
    // joinGroups lays columns out group by group; find each series' column.
    const offsets: number[] = [];
    let o = 1;
    for (const g of groups) {
      offsets.push(o);
      o += g.ys.length;
    }
    const data: Aligned = [joined[0]];
    for (const [g, c] of order) {
      data.push(g < 0 ? new Array(joined[0].length).fill(undefined) : joined[offsets[g] + c]);
    }
    this.lastPointCount = maxPoints;
    u.batch(() => {
      u.setData(data as uPlot.AlignedData, !view.zoom);
      if (view.zoom) u.setScale("x", { min: view.zoom[0], max: view.zoom[1] });
    });
    this.renderLegend();
  }

  private installWheel(u: uPlot): void {
    u.over.addEventListener("wheel", (e) => {
      e.preventDefault();
      const xs = u.scales.x;
      if (xs.min === undefined || xs.max === undefined || xs.min === null || xs.max === null) {
        return;
      }
      const log = this.view.xlog;
      const t = (v: number) => (log ? Math.log10(v) : v), inv = (v: number) => (log ? 10 ** v : v);
      const a = t(xs.min), b = t(xs.max);
      const pan = e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY);
      if (pan) {
        const d = ((e.shiftKey ? e.deltaY : e.deltaX) > 0 ? 0.1 : -0.1) * (b - a);
        this.host.setZoom([inv(a + d), inv(b + d)]);
      } else {
        const at = t(u.posToVal(e.offsetX, "x"));
        const f = e.deltaY > 0 ? 1.25 : 0.8;
        this.host.setZoom([inv(at - (at - a) * f), inv(at + (b - at) * f)]);
      }
    }, { passive: false });
    u.over.addEventListener("dblclick", () => this.host.setZoom(null));
  }

  /**
   * Every event marker as a dashed line in its run's colour; labels where placeLabels finds
   * room (LABEL_ROWS rows at the top), each on a halo of the card's colour so it reads over
   * the curves. The markers are kept for the legend (renderLegend names those near the cursor).
   */
  private drawEvents(u: uPlot, scale = 1): void {
    const ctx = u.ctx;
    // A PNG export draws a scaled copy: sizes grow by `scale`, and what was drawn is kept
    // only for the live chart.
    const dpr = (globalThis.devicePixelRatio || 1) * scale;
    const { top, height, left, width } = u.bbox;
    const seen = new Set<string>();
    const markers: DrawnMarker[] = [];
    const colours: string[] = [];
    const texts: string[] = [];
    for (const run of this.runs) {
      for (const e of run.events) {
        const x = this.view.x === "step" ? e.step : run.series.wallAt(e.step);
        if (!Number.isFinite(x) || (this.view.xlog && x <= 0)) continue;
        const px = u.valToPos(x, "x", true);
        if (!(px >= left && px <= left + width)) continue;
        const text = eventLabel(e);
        const key = `${Math.round(px)}|${text}`;
        if (seen.has(key)) continue;
        seen.add(key);
        markers.push({ x: (px - left) / dpr, run: run.id, event: e, label: null });
        colours.push(run.colour);
        texts.push(text);
      }
    }
    if (scale === 1) this.markers = markers;
    if (!markers.length) return;
    ctx.save();
    ctx.font = `${LABEL_FONT_PX * dpr}px system-ui, sans-serif`;
    if (this.labelWidthsDpr !== dpr) {
      this.labelWidths.clear();
      this.labelWidthsDpr = dpr;
    }
    const widths = texts.map((t) => {
      let w = this.labelWidths.get(t);
      if (w === undefined) {
        w = ctx.measureText(t).width / dpr;
        this.labelWidths.set(t, w);
      }
      return w;
    });
    const spots = placeLabels(markers.map((m, i) => ({ x: m.x, width: widths[i] })), {
      left: 0,
      right: width / dpr,
      rows: LABEL_ROWS,
      offset: 3,
      gap: 10,
    });
    ctx.lineWidth = dpr;
    ctx.setLineDash([4 * dpr, 3 * dpr]);
    markers.forEach((m, i) => {
      const px = Math.round(left + m.x * dpr) + 0.5;
      ctx.strokeStyle = withAlpha(colours[i], this.palette.markerAlpha);
      ctx.beginPath();
      ctx.moveTo(px, top);
      ctx.lineTo(px, top + height);
      ctx.stroke();
    });
    ctx.setLineDash([]);
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.lineJoin = "round";
    ctx.lineWidth = 3 * dpr;
    ctx.strokeStyle = this.palette.card;
    markers.forEach((m, i) => {
      const spot = spots[i];
      if (!spot) return;
      // In the strip above the plot area (padding reserved in build()), off the data.
      const rowTop = -LABEL_STRIP_PX + spot.row * LABEL_ROW_PX;
      m.label = { ...spot, width: widths[i], top: rowTop };
      const tx = left + spot.left * dpr, ty = top + rowTop * dpr;
      ctx.strokeText(texts[i], tx, ty);
      ctx.fillStyle = colours[i];
      ctx.fillText(texts[i], tx, ty);
    });
    ctx.restore();
  }

  private buildLegend(): void {
    clear(this.legend);
    this.legendRows.clear();
    this.legend.append(h("div.legend-x", {}, h("span.legend-step"), h("span.legend-event")));
    for (const run of this.runs) {
      runLines(run).forEach((line, g) => {
        const label = run.lines?.length ? `${run.label} · ${line.label}` : run.label;
        const row = h(
          "div.legend-row",
          { "data-run": run.id, "data-line": String(g) },
          h("i.swatch", { style: `background:${line.colour}` }),
          h("span.legend-label", {}, label),
          h("span.legend-value", { title: "latest raw value (mean over replicas)" }),
          h("span.legend-smooth", { title: "smoothed mean (EMA)" }),
          h("span.legend-range", { title: "min–max over replicas" }),
        );
        this.legendRows.set(`${run.id}/${g}`, row);
        this.legend.append(row);
      });
    }
  }

  /** Values under the cursor (or the latest ones when the cursor is away). */
  private renderLegend(): void {
    const u = this.plot;
    if (!u) return;
    const xs = u.data[0];
    const idx = this.cursorIdx;
    const xText = this.legend.querySelector<HTMLElement>(".legend-step")!;
    const xv = idx !== null && idx < xs.length ? xs[idx] : null;
    // Events whose marker is under the cursor (their labels may have been dropped).
    const near = idx === null ? [] : nearestMarkers(
      this.markers.map((m) => m.x),
      u.cursor.left ?? NaN,
      MARKER_REACH_PX,
    );
    const eventText = near.map((i) => eventDescription(this.markers[i].event)).join(" · ");
    const eventEl = this.legend.querySelector<HTMLElement>(".legend-event")!;
    if (eventEl.textContent !== eventText) eventEl.textContent = eventText;
    xText.textContent = xv === null
      ? "latest"
      : this.view.x === "step"
      ? `step ${Math.round(xv).toLocaleString("en-US")}`
      : fmtDuration(xv);
    const valueAt = (col: number, at: number | null): number | null => {
      const c = u.data[col] as ArrayLike<number | null | undefined>;
      let i = at ?? c.length - 1;
      // A run may have no point at exactly this x (runs are joined on their union of x).
      while (i >= 0 && c[i] === undefined) i--;
      return i >= 0 ? (c[i] ?? null) : null;
    };
    // The value shown bold is always the raw mean; the smoothed one stands beside it, marked.
    for (const run of this.runs) {
      runLines(run).forEach((_, g) => {
        const row = this.legendRows.get(`${run.id}/${g}`);
        if (!row) return;
        const col = (kind: SeriesKind) =>
          1 + this.meta.findIndex((m) => m.run === run.id && m.line === g && m.kind === kind);
        const v = valueAt(col("raw"), idx), lo = valueAt(col("lo"), idx);
        const hi = valueAt(col("hi"), idx);
        const smoothCol = col("smooth");
        const sm = smoothCol > 0 ? valueAt(smoothCol, idx) : null;
        row.querySelector<HTMLElement>(".legend-value")!.textContent = fmt(v);
        row.querySelector<HTMLElement>(".legend-smooth")!.textContent = smoothCol > 0
          ? `smoothed ${fmt(sm)}`
          : "";
        row.querySelector<HTMLElement>(".legend-range")!.textContent = lo === null
          ? ""
          : `[${fmt(lo)}, ${fmt(hi)}]`;
      });
    }
  }

  /** The data shown, one column per series, as CSV. */
  csv(): string {
    const u = this.plot;
    if (!u) return "";
    const head = [this.view.x === "step" ? "step" : "wall_ms"];
    for (const m of this.meta) {
      const run = this.runs.find((r) => r.id === m.run)!;
      const line = run.lines?.length && m.kind !== "replica" ? ` ${run.lines[m.line].label}` : "";
      head.push(`${run.label}${line} [${m.run}] ${m.label}`.replaceAll(",", " "));
    }
    const lines = [head.join(",")];
    const cols = u.data as ArrayLike<number | null | undefined>[];
    for (let i = 0; i < cols[0].length; i++) {
      const row: string[] = [];
      for (const c of cols) {
        const v = c[i];
        row.push(v === null || v === undefined ? "" : String(v));
      }
      lines.push(row.join(","));
    }
    return lines.join("\n") + "\n";
  }

  private exportCsv(): void {
    download(`${this.metric}.csv`, new Blob([this.csv()], { type: "text/csv" }));
  }

  /**
   * The plot drawn at EXPORT_PIXEL_RATIO device pixels per CSS pixel: the live canvas when
   * the screen is that dense, else a detached copy of the chart with every size scaled (uPlot
   * takes its pixel ratio from the window, not per chart, so the copy scales its options).
   */
  private async exportCanvas(): Promise<
    { canvas: HTMLCanvasElement; ratio: number; dispose(): void }
  > {
    const u = this.plot!;
    const dpr = globalThis.devicePixelRatio || 1;
    if (dpr >= EXPORT_PIXEL_RATIO || !this.options) {
      return { canvas: u.ctx.canvas, ratio: dpr, dispose() {} };
    }
    const k = EXPORT_PIXEL_RATIO / dpr;
    const o = this.options;
    const font = (f: unknown) =>
      typeof f === "string" ? f.replace(/(\d+(?:\.\d+)?)px/, (_, n) => `${Number(n) * k}px`) : f;
    const opts: uPlot.Options = {
      ...o,
      width: u.width * k,
      height: u.height * k,
      padding: (o.padding as number[]).map((v) => v * k) as uPlot.Padding,
      cursor: { show: false },
      series: o.series.map((sr) => ({
        ...sr,
        width: sr.width === undefined ? undefined : sr.width * k,
        dash: sr.dash?.map((v) => v * k),
      })),
      axes: o.axes!.map((ax) => ({
        ...ax,
        font: font(ax.font) as string,
        size: typeof ax.size === "number" ? ax.size * k : ax.size,
        gap: (ax.gap ?? 5) * k,
        ticks: { ...ax.ticks, size: (ax.ticks?.size ?? 10) * k },
      })),
      hooks: { draw: [(c) => this.drawEvents(c, k)] },
    };
    const host = h("div", { style: "position:fixed;left:-100000px;top:0" });
    document.body.append(host);
    const copy = new uPlot(opts, u.data, host);
    if (u.scales.x.min != null && u.scales.x.max != null) {
      copy.setScale("x", { min: u.scales.x.min, max: u.scales.x.max });
    }
    // uPlot sizes and draws in a microtask after construction.
    await new Promise((resolve) => setTimeout(resolve, 0));
    return {
      canvas: copy.ctx.canvas,
      ratio: EXPORT_PIXEL_RATIO,
      dispose() {
        copy.destroy();
        host.remove();
      },
    };
  }

  /** The chart, its title and legend on the theme's card colour, as a PNG blob (2×). */
  async png(): Promise<Blob | null> {
    const u = this.plot;
    if (!u) return null;
    const plot = await this.exportCanvas();
    const dpr = plot.ratio;
    const src = plot.canvas;
    const lines = this.runs.flatMap((run) =>
      runLines(run).map((line) => ({
        colour: line.colour,
        text: run.lines?.length
          ? `${run.label} · ${line.label}  (${run.id})`
          : `${run.label}  (${run.id})`,
      }))
    );
    const legendH = (lines.length * 16 + 8) * dpr, titleH = 26 * dpr;
    const out = document.createElement("canvas");
    out.width = src.width;
    out.height = src.height + titleH + legendH;
    const ctx = out.getContext("2d")!;
    ctx.fillStyle = this.palette.card;
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = this.palette.text;
    ctx.font = `600 ${13 * dpr}px system-ui, sans-serif`;
    ctx.fillText(
      `${this.metric}  ·  x: ${this.view.x}${this.view.xlog ? " (log)" : ""}  ·  y: ${
        this.ylog ? "log" : "linear"
      }`,
      8 * dpr,
      18 * dpr,
    );
    ctx.drawImage(src, 0, titleH);
    plot.dispose();
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    lines.forEach((line, i) => {
      const y = src.height + titleH + (i * 16 + 4) * dpr;
      ctx.fillStyle = line.colour;
      ctx.fillRect(8 * dpr, y + 2 * dpr, 10 * dpr, 10 * dpr);
      ctx.fillStyle = this.palette.text;
      ctx.fillText(line.text, 24 * dpr, y + 11 * dpr);
    });
    return await new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }

  private async exportPng(): Promise<void> {
    const blob = await this.png();
    if (blob) download(`${this.metric}.png`, blob);
  }
}
