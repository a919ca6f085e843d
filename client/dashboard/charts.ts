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

export interface ChartRun {
  id: string;
  label: string;
  colour: string;
  series: RunSeries;
  /** The server's re-bucketed rows for the current zoom window, when they have arrived. */
  window: RunSeries | null;
  events: RunEvent[];
}

export interface ChartHost {
  setZoom(zoom: [number, number] | null): void;
  setYLog(metric: string, log: boolean): void;
}

export type SeriesKind = "lo" | "hi" | "raw" | "smooth" | "replica";

export interface SeriesMeta {
  run: string;
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

/** Event labels: rows of text at the plot's top, their height, and the cursor's reach. */
const LABEL_ROWS = 3, LABEL_ROW_PX = 12, LABEL_FONT_PX = 10, MARKER_REACH_PX = 5;

/** An event marker as last drawn: x in CSS pixels from the plot's left edge. */
interface DrawnMarker {
  x: number;
  run: string;
  event: RunEvent;
  /** Where its label went, or null when it was dropped for lack of room. */
  label: { left: number; row: number; width: number } | null;
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
    readonly doc: string,
    private readonly suggestedLog: boolean,
    private readonly host: ChartHost,
  ) {
    this.ylog = suggestedLog;
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
        h("div.chart-title", {}, h("span.metric-name", {}, metric), h("span.metric-doc", {}, doc)),
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
      runs.map((r) => [r.id, r.colour, r.label, r.series.replicas]),
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
      this.plot.setSize({ width: w, height: 240 });
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
      const base = series.length;
      const push = (s: uPlot.Series, m: Omit<SeriesMeta, "run">) => {
        series.push({ spanGaps: true, points: { show: false }, ...s });
        this.meta.push({ run: run.id, ...m });
      };
      push({ label: `${run.label} min`, stroke: "transparent", width: 0 }, {
        kind: "lo",
        label: "min",
      });
      push({ label: `${run.label} max`, stroke: "transparent", width: 0 }, {
        kind: "hi",
        label: "max",
      });
      bands.push({ series: [base + 1, base], fill: withAlpha(run.colour, this.palette.bandAlpha) });
      push(
        {
          label: `${run.label} mean`,
          stroke: smoothing ? withAlpha(run.colour, 0.3) : run.colour,
          width: smoothing ? 1 : 1.75,
        },
        { kind: "raw", label: "mean" },
      );
      if (smoothing) {
        push({ label: `${run.label} smoothed`, stroke: run.colour, width: 1.75 }, {
          kind: "smooth",
          label: "smoothed mean",
        });
      }
      if (view.replicas) {
        for (let r = 0; r < run.series.replicas; r++) {
          push({ label: `${run.label} r${r}`, stroke: withAlpha(run.colour, 0.55), width: 0.75 }, {
            kind: "replica",
            replica: r,
            label: `replica ${r}`,
          });
        }
      }
    }
    const xFmt = (v: number) => (view.x === "step" ? fmtSteps(v) : fmtDuration(v));
    // Log axes: 1-2-5 ticks over a couple of decades, else powers of ten at a stride that
    // keeps about six labels; the other splits lose their label and grid line.
    const logTicks: uPlot.Axis.Filter = (u, splits, axisIdx) => {
      const scale = u.scales[axisIdx === 0 ? "x" : "y"];
      if (scale.distr !== 3 || scale.min == null || scale.max == null) return splits;
      const decades = Math.log10(scale.max / scale.min);
      const stride = Math.max(1, Math.ceil(decades / 6));
      return splits.map((v) => {
        const e = Math.floor(Math.log10(v) + 1e-9), mantissa = Math.round(v / 10 ** e);
        if (decades <= 2.5) return [1, 2, 5].includes(mantissa) ? v : null;
        return mantissa === 1 && e % stride === 0 ? v : null;
      });
    };
    const opts: uPlot.Options = {
      width: this.width(),
      height: 240,
      series,
      bands,
      legend: { show: false },
      padding: [12, 12, 0, 0],
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
        }],
        draw: [(u) => this.drawEvents(u)],
      },
    };
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
      gd.ys.push({ values: cd.lo, agg: "min" }, { values: cd.hi, agg: "max" }, {
        values: cd.mean,
        agg: "last",
      });
      order.push([gdIndex, 0], [gdIndex, 1], [gdIndex, 2]);
      if (smoothing) {
        gl.ys.push({ values: cl.smooth, agg: "last" });
        order.push([glIndex, gl.ys.length - 1]);
      }
      if (view.replicas) {
        for (let r = 0; r < R; r++) {
          if (smoothing) {
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
  private drawEvents(u: uPlot): void {
    const ctx = u.ctx;
    const dpr = globalThis.devicePixelRatio || 1;
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
    this.markers = markers;
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
      m.label = { ...spot, width: widths[i] };
      const tx = left + spot.left * dpr, ty = top + (2 + spot.row * LABEL_ROW_PX) * dpr;
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
      const row = h(
        "div.legend-row",
        { "data-run": run.id },
        h("i.swatch", { style: `background:${run.colour}` }),
        h("span.legend-label", {}, run.label),
        h("span.legend-value"),
        h("span.legend-range"),
      );
      this.legendRows.set(run.id, row);
      this.legend.append(row);
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
    const main = this.view.smoothing > 0 ? "smooth" : "raw";
    for (const run of this.runs) {
      const row = this.legendRows.get(run.id);
      if (!row) continue;
      const col = (kind: SeriesKind) =>
        1 + this.meta.findIndex((m) => m.run === run.id && m.kind === kind);
      const v = valueAt(col(main), idx), lo = valueAt(col("lo"), idx), hi = valueAt(col("hi"), idx);
      (row.children[2] as HTMLElement).textContent = fmt(v);
      (row.children[3] as HTMLElement).textContent = lo === null ? "" : `[${fmt(lo)}, ${fmt(hi)}]`;
    }
  }

  /** The data shown, one column per series, as CSV. */
  csv(): string {
    const u = this.plot;
    if (!u) return "";
    const head = [this.view.x === "step" ? "step" : "wall_ms"];
    for (const m of this.meta) {
      const run = this.runs.find((r) => r.id === m.run)!;
      head.push(`${run.label} [${m.run}] ${m.label}`.replaceAll(",", " "));
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

  /** The chart, its title and legend on the theme's card colour, as a PNG blob. */
  png(): Promise<Blob | null> {
    const u = this.plot;
    if (!u) return Promise.resolve(null);
    const dpr = globalThis.devicePixelRatio || 1;
    const src = u.ctx.canvas;
    const legendH = (this.runs.length * 16 + 8) * dpr, titleH = 26 * dpr;
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
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    this.runs.forEach((run, i) => {
      const y = src.height + titleH + (i * 16 + 4) * dpr;
      ctx.fillStyle = run.colour;
      ctx.fillRect(8 * dpr, y + 2 * dpr, 10 * dpr, 10 * dpr);
      ctx.fillStyle = this.palette.text;
      ctx.fillText(`${run.label}  (${run.id})`, 24 * dpr, y + 11 * dpr);
    });
    return new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }

  private async exportPng(): Promise<void> {
    const blob = await this.png();
    if (blob) download(`${this.metric}.png`, blob);
  }
}
