/**
 * PEGR panel: the phase plane "signal against noise over time". One shared plot for every
 * shown pegr run: x = noise max<w, ξ_i>, y = signal max|<w, μ>|, both on log axes (values at
 * or below 1e-6 drawn at 1e-6), one polyline per replica (σ_p) in the run's colour, faint at
 * the start and opaque at the latest step, a ring where the regulariser switched off and a
 * dot at the latest point. GD drifts right (noise memorised, signal flat); PEGR in the theory
 * regime drifts left and up (noise suppressed, signal learned), so the methods separate.
 * Fed by the runs' metric columns (the `last` value of each replica), not by frames.
 */
import { clear, fmt, h } from "../dom.ts";
import { logTicks } from "../log_ticks.ts";
import type { RunSeries } from "../series.ts";
import { type PanelInstance, type PanelRun, registerPanel } from "./registry.ts";
import { type Box, claimLabelBox, prepareCanvas } from "./canvas.ts";
import { type Palette, PALETTES } from "../theme.ts";

/** Values at or below this are drawn at it (noise under PEGR reaches ~1e-16). */
export const PHASE_FLOOR = 1e-6;
/** Opacity steps of the fading trail (one path per step keeps drawing cheap). */
const FADE_LEVELS = 12;

/** One replica's trajectory in log10 coordinates; NaN where a value is missing. */
export interface PhaseTrack {
  step: Float64Array;
  /** log10(max(noise, floor)). */
  x: Float64Array;
  /** log10(max(signal, floor)). */
  y: Float64Array;
}

function log10Floor(v: number, floor: number): number {
  if (Number.isNaN(v)) return NaN;
  return Math.log10(Math.max(v, floor));
}

/**
 * Maps a run's columns to log-plot coordinates, one track per replica: x from `noise`, y from
 * `signal` (their `last` values), floored at `floor`. Rows where either is NaN stay NaN (a
 * gap); ±Infinity is clamped (a diverged value is still a point at the edge).
 */
export function phaseTracks(series: RunSeries, floor = PHASE_FLOOR): PhaseTrack[] {
  const sig = series.cols.get("signal"), noi = series.cols.get("noise");
  const R = series.replicas, n = series.n;
  const tracks: PhaseTrack[] = [];
  for (let r = 0; r < R; r++) {
    const x = new Float64Array(n), y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const xs = noi ? log10Floor(noi.last[i * R + r], floor) : NaN;
      const ys = sig ? log10Floor(sig.last[i * R + r], floor) : NaN;
      const ok = !Number.isNaN(xs) && !Number.isNaN(ys);
      x[i] = ok ? clampLog(xs) : NaN;
      y[i] = ok ? clampLog(ys) : NaN;
    }
    tracks.push({ step: series.step.slice(0, n), x, y });
  }
  return tracks;
}

/** +Infinity (overflow) drawn at 1e30: it still shows, at the edge. */
function clampLog(v: number): number {
  return v === Infinity ? 30 : v;
}

/** The step of the run's regulariser switch-off (a phase_change event), or null. */
export function switchOffStep(run: Pick<PanelRun, "events">): number | null {
  for (const ev of run.events ?? []) {
    if (ev.type === "phase_change" && ev.replica === undefined) return ev.step;
  }
  return null;
}

/** The row whose step is closest to `step` (rows are sorted by step). */
function rowAt(steps: Float64Array, step: number): number {
  let lo = 0, hi = steps.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (steps[mid] < step) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= steps.length) return steps.length - 1;
  if (lo > 0 && step - steps[lo - 1] < steps[lo] - step) return lo - 1;
  return lo;
}

/** #rrggbb as rgba with opacity a. */
function rgba(hex: string, a: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a.toFixed(3)})`;
}

/** Per-replica labels: "σp=…" when sigma_p is a per-replica list, else "r0", "r1", …. */
function replicaLabels(run: PanelRun, R: number): string[] {
  const s = run.spec.params.sigma_p;
  return Array.from(
    { length: R },
    (_, r) => Array.isArray(s) && s.length === R ? `σp=${s[r]}` : `r${r}`,
  );
}

interface RunView {
  run: PanelRun;
  tracks: PhaseTrack[];
  off: number | null;
  labels: string[];
}

function decadeLabel(k: number): string {
  if (k === Math.log10(PHASE_FLOOR)) return `≤1e${k}`;
  return k === 0 ? "1" : k === 1 ? "10" : `1e${k}`;
}

/** Tick labels on the phase plane's axes when it was last drawn (for tests). */
let drawnTicks = { x: 0, y: 0 };

function draw(
  canvas: HTMLCanvasElement,
  views: RunView[],
  cssW: number,
  cssH: number,
  p: Palette,
): void {
  const ctx = prepareCanvas(canvas, cssW, cssH);

  // Extent over every finite point, rounded out to whole decades.
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const v of views) {
    for (const t of v.tracks) {
      for (let i = 0; i < t.x.length; i++) {
        const x = t.x[i], y = t.y[i];
        if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  const floorLog = Math.log10(PHASE_FLOOR);
  if (!(x1 >= x0)) [x0, x1, y0, y1] = [floorLog, 0, floorLog, 0];
  // Nothing lies below the floor: the axis starts there (its tick reads "≤1e-6").
  x0 = Math.max(Math.floor(x0 - 0.05), floorLog), x1 = Math.ceil(x1 + 0.05);
  y0 = Math.max(Math.floor(y0 - 0.05), floorLog), y1 = Math.ceil(y1 + 0.05);
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1;

  const padL = 46, padR = 10, padT = 8, padB = 34;
  const w = cssW - padL - padR, hgt = cssH - padT - padB;
  if (w <= 10 || hgt <= 10) return;
  // Inset so points on the floor (or the top decade) and their rings are not cut in half.
  const inset = 7;
  const X = (v: number) => padL + inset + ((w - 2 * inset) * (v - x0)) / (x1 - x0);
  const Y = (v: number) => padT + inset + (hgt - 2 * inset) * (1 - (v - y0) / (y1 - y0));

  // Grid at decades (every other one when crowded), labels, axis titles.
  ctx.font = "10px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = p.panelGrid;
  ctx.fillStyle = p.panelLabel;
  // Ticks: decades, or 1-2-5 / every mantissa when few decades are shown (log_ticks.ts).
  const ticks = (lo: number, hi: number, room: number) =>
    logTicks(10 ** lo, 10 ** hi, 3, Math.max(2, room)).map((v) => Math.log10(v));
  const label = (k: number) =>
    Math.abs(k - Math.round(k)) < 1e-9 ? decadeLabel(Math.round(k)) : fmt(10 ** k);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const xTicks = ticks(x0, x1, Math.floor(w / 48)), yTicks = ticks(y0, y1, Math.floor(hgt / 22));
  drawnTicks = { x: xTicks.length, y: yTicks.length };
  for (const k of xTicks) {
    const px = Math.round(X(k)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(px, padT);
    ctx.lineTo(px, padT + hgt);
    ctx.stroke();
    ctx.textAlign = k === x0 ? "left" : "center";
    ctx.fillText(label(k), k === x0 ? px - 6 : px, padT + hgt + 3);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const k of yTicks) {
    const py = Math.round(Y(k)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(padL, py);
    ctx.lineTo(padL + w, py);
    ctx.stroke();
    ctx.fillText(label(k), padL - 4, py);
  }
  ctx.fillStyle = p.panelTitle;
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText("noise  max_i <w, ξ_i>  →", padL + w / 2, cssH - 2);
  ctx.save();
  ctx.translate(11, padT + hgt / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText("signal  max |<w, μ>|  →", 0, 0);
  ctx.restore();

  // signal = noise diagonal, for orientation.
  const d0 = Math.max(x0, y0), d1 = Math.min(x1, y1);
  if (d1 > d0) {
    ctx.save();
    ctx.setLineDash([4, 4]);
    ctx.strokeStyle = p.guide;
    ctx.beginPath();
    ctx.moveTo(X(d0), Y(d0));
    ctx.lineTo(X(d1), Y(d1));
    ctx.stroke();
    ctx.restore();
  }

  ctx.save();
  ctx.beginPath();
  ctx.rect(padL, padT, w, hgt);
  ctx.clip();
  ctx.lineJoin = "round";
  ctx.lineCap = "round";
  // Trails: segment i→i+1 gets the opacity of its time fraction, batched per level.
  for (const v of views) {
    const last = v.tracks[0]?.step.length ? v.tracks[0].step[v.tracks[0].step.length - 1] : 0;
    const first = v.tracks[0]?.step.length ? v.tracks[0].step[0] : 0;
    const span = last - first || 1;
    ctx.lineWidth = 1.6;
    for (let level = 0; level < FADE_LEVELS; level++) {
      const a = 0.1 + (0.9 * (level + 1)) / FADE_LEVELS;
      ctx.strokeStyle = rgba(v.run.colour, a);
      ctx.beginPath();
      for (const t of v.tracks) {
        for (let i = 0; i + 1 < t.x.length; i++) {
          const lv = Math.min(
            FADE_LEVELS - 1,
            Math.floor(((t.step[i + 1] - first) / span) * FADE_LEVELS),
          );
          if (lv !== level) continue;
          if (!Number.isFinite(t.x[i]) || !Number.isFinite(t.x[i + 1])) continue;
          if (!Number.isFinite(t.y[i]) || !Number.isFinite(t.y[i + 1])) continue;
          ctx.moveTo(X(t.x[i]), Y(t.y[i]));
          ctx.lineTo(X(t.x[i + 1]), Y(t.y[i + 1]));
        }
      }
      ctx.stroke();
    }
  }
  // Switch-off rings, then latest dots with the replica's label.
  ctx.font = "10px system-ui, sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  const labelBoxes: Box[] = [];
  for (const v of views) {
    for (const [r, t] of v.tracks.entries()) {
      if (!t.step.length) continue;
      if (v.off !== null && v.off <= t.step[t.step.length - 1]) {
        const i = rowAt(t.step, v.off);
        if (Number.isFinite(t.x[i]) && Number.isFinite(t.y[i])) {
          ctx.strokeStyle = v.run.colour;
          ctx.fillStyle = p.card;
          ctx.lineWidth = 1.5;
          ctx.beginPath();
          ctx.arc(X(t.x[i]), Y(t.y[i]), 4.5, 0, 2 * Math.PI);
          ctx.fill();
          ctx.stroke();
        }
      }
      let j = t.x.length - 1;
      while (j >= 0 && !(Number.isFinite(t.x[j]) && Number.isFinite(t.y[j]))) j--;
      if (j < 0) continue;
      const px = X(t.x[j]), py = Y(t.y[j]);
      ctx.fillStyle = v.run.colour;
      ctx.strokeStyle = p.card;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.arc(px, py, 3.5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      if (v.tracks.length > 1) {
        const right = px > padL + w - 50;
        const tw = ctx.measureText(v.labels[r]).width, tx = px + (right ? -6 : 6);
        const box = { x: right ? tx - tw : tx, y: py - 13, w: tw, h: 12 };
        if (claimLabelBox(labelBoxes, box)) {
          ctx.fillStyle = rgba(v.run.colour, 0.9);
          ctx.textAlign = right ? "right" : "left";
          ctx.fillText(v.labels[r], tx, py - 7);
        }
      }
    }
  }
  ctx.restore();
}

registerPanel("pegr", {
  title: "Signal against noise over time (phase plane, log–log)",
  frames: [],
  create(container): PanelInstance {
    const canvas = h("canvas.phase", { style: "width:100%;height:340px;display:block" });
    const legend = h("div.phase-legend", {
      style:
        "display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;font-size:12px;margin-top:4px",
    });
    container.append(canvas, legend);
    let views: RunView[] = [];
    let size = { width: 0, height: 0 };
    /** What was last drawn (run ids, series versions, events, size): skip identical redraws. */
    let drawnKey = "";
    let legendKey = "";
    let palette = PALETTES.light;
    /** The theme last drawn in. */
    let drawnTheme: string | null = null;
    const redraw = () => {
      if (size.width <= 0) return;
      draw(canvas, views, size.width, size.height, palette);
      drawnTheme = palette.name;
    };
    const resize = new ResizeObserver((entries) => {
      for (const entry of entries) {
        size = { width: entry.contentRect.width, height: entry.contentRect.height };
      }
      redraw();
    });
    resize.observe(canvas);
    return {
      update(runs, next) {
        palette = next;
        const key = JSON.stringify([
          palette.name,
          ...runs.map((
            r,
          ) => [r.id, r.colour, r.series?.version ?? -1, r.series?.n ?? 0, r.events?.length]),
        ]);
        if (key === drawnKey) return;
        drawnKey = key;
        views = runs.filter((r) => r.series).map((run) => ({
          run,
          tracks: phaseTracks(run.series!),
          off: switchOffStep(run),
          labels: replicaLabels(run, run.series!.replicas),
        }));
        const lk = JSON.stringify(runs.map((r) => [r.id, r.label, r.colour]));
        if (lk !== legendKey) {
          legendKey = lk;
          clear(legend);
          for (const r of runs) {
            legend.append(
              h(
                "span",
                { style: "display:inline-flex;align-items:center;gap:5px", "data-run": r.id },
                h("i.swatch", { style: `background:${r.colour}` }),
                r.label,
              ),
            );
          }
          legend.append(
            h(
              "span",
              { style: "color:var(--muted);margin-left:auto;font-size:11px" },
              "faint → opaque: early → late · ○ regulariser off · ● latest · dashed: signal = noise",
            ),
          );
        }
        redraw();
      },
      debug() {
        return Object.fromEntries(views.map((v) => {
          const s = v.run.series!, R = s.replicas, n = s.n;
          const latest = (metric: string) => {
            const c = s.cols.get(metric);
            return Array.from({ length: R }, (_, r) => (c && n ? c.last[(n - 1) * R + r] : NaN));
          };
          return [v.run.id, {
            label: v.run.label,
            points: n,
            replicas: R,
            step: n ? s.step[n - 1] : null,
            switchOff: v.off,
            theme: drawnTheme,
            ticks: drawnTicks,
            signal: latest("signal"),
            noise: latest("noise"),
          }];
        }));
      },
      destroy() {
        resize.disconnect();
        clear(container);
      },
    };
  },
});
