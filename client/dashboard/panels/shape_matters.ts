/**
 * Shape Matters panel: per shown run, the latest v⊙v per coordinate (bar = mean over
 * replicas, whisker = min–max over replicas) against v*⊙v* (1 on the first r coordinates,
 * 0 elsewhere, drawn as an outline), so one watches the support emerge under label noise
 * while GD stays dense.
 */
import { clear, fmtSteps, h } from "../dom.ts";
import { type PanelInstance, type PanelRun, registerPanel } from "./registry.ts";
import { prepareCanvas } from "./canvas.ts";
import { type Palette, PALETTES, type ThemeName } from "../theme.ts";

const FRAME = "v_sq";
const SUPPORT_THRESHOLD = 0.01;

interface BarsView {
  step: number;
  width: number;
  r: number;
  mean: Float64Array;
  lo: Float64Array;
  hi: Float64Array;
}

function summarise(run: PanelRun): BarsView | null {
  const f = run.frames.get(FRAME);
  if (!f || f.width <= 0) return null;
  const d = f.width, R = Math.floor(f.values.length / d);
  const mean = new Float64Array(d), lo = new Float64Array(d).fill(Infinity);
  const hi = new Float64Array(d).fill(-Infinity);
  for (let k = 0; k < d; k++) {
    let sum = 0, count = 0;
    for (let rep = 0; rep < R; rep++) {
      const v = f.values[rep * d + k];
      if (!Number.isFinite(v)) continue;
      sum += v;
      count++;
      if (v < lo[k]) lo[k] = v;
      if (v > hi[k]) hi[k] = v;
    }
    mean[k] = count ? sum / count : NaN;
  }
  const r = Math.min(Number(run.spec.params.r ?? 0), d);
  return { step: f.step, width: d, r, mean, lo, hi };
}

function draw(
  canvas: HTMLCanvasElement,
  view: BarsView,
  colour: string,
  cssW: number,
  cssH: number,
  p: Palette,
): void {
  const ctx = prepareCanvas(canvas, cssW, cssH);
  const padL = 30, padR = 6, padT = 6, padB = 16;
  const w = cssW - padL - padR, hgt = cssH - padT - padB;
  let top = 1.25;
  for (const v of view.hi) if (Number.isFinite(v)) top = Math.max(top, v * 1.05);
  top = Math.min(top, 4);
  const y = (v: number) => padT + hgt * (1 - Math.min(Math.max(v, 0), top) / top);
  const bw = w / view.width;
  // grid and axis labels
  ctx.font = "10px system-ui, sans-serif";
  ctx.fillStyle = p.panelLabel;
  ctx.strokeStyle = p.panelGrid;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of [0, 0.5, 1, 1.5, 2, 3, 4].filter((t) => t <= top)) {
    ctx.beginPath();
    ctx.moveTo(padL, Math.round(y(t)) + 0.5);
    ctx.lineTo(padL + w, Math.round(y(t)) + 0.5);
    ctx.stroke();
    ctx.fillText(String(t), padL - 4, y(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const tick = Math.max(1, Math.ceil(view.width / 10 / 5) * 5);
  for (let k = 0; k < view.width; k += tick) {
    ctx.fillText(String(k), padL + (k + 0.5) * bw, padT + hgt + 3);
  }
  // bars (mean) and whiskers (min–max over replicas)
  ctx.fillStyle = colour;
  for (let k = 0; k < view.width; k++) {
    const m = view.mean[k];
    if (!Number.isFinite(m)) continue;
    const x0 = padL + k * bw + bw * 0.15;
    ctx.fillRect(x0, y(m), Math.max(1, bw * 0.7), y(0) - y(m));
  }
  ctx.strokeStyle = p.whisker;
  for (let k = 0; k < view.width; k++) {
    if (!(view.hi[k] > view.lo[k])) continue;
    const xc = Math.round(padL + (k + 0.5) * bw) + 0.5;
    ctx.beginPath();
    ctx.moveTo(xc, y(view.lo[k]));
    ctx.lineTo(xc, y(view.hi[k]));
    ctx.stroke();
  }
  // v*⊙v*: 1 on the first r coordinates (shaded, with a line at 1), 0 elsewhere.
  if (view.r > 0) {
    ctx.globalCompositeOperation = "destination-over";
    ctx.fillStyle = p.targetShade;
    ctx.fillRect(padL, padT, view.r * bw, hgt);
    ctx.globalCompositeOperation = "source-over";
    ctx.strokeStyle = p.target;
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(padL, y(1));
    ctx.lineTo(padL + view.r * bw, y(1));
    ctx.stroke();
    ctx.fillStyle = p.target;
    ctx.textAlign = "left";
    ctx.textBaseline = "bottom";
    ctx.fillText("v*", padL + view.r * bw + 3, y(1) + 5);
  }
}

interface Card {
  card: HTMLElement;
  canvas: HTMLCanvasElement;
  info: HTMLElement;
  swatch: HTMLElement;
  /** The frame last drawn, and the canvas' CSS size (from a ResizeObserver). */
  frame: unknown;
  /** The theme it was last drawn in. */
  theme: ThemeName | null;
  width: number;
  height: number;
}

registerPanel("shape-matters", {
  title: "v⊙v per coordinate vs v* (latest frame)",
  frames: [FRAME],
  create(container): PanelInstance {
    const cards = new Map<string, Card>();
    const views = new Map<string, BarsView>();
    const colours = new Map<string, string>();
    let palette = PALETTES.light;
    const grid = h("div.bars-grid");
    container.append(grid);
    const paint = (c: Card, v: BarsView, id: string) => {
      draw(c.canvas, v, colours.get(id)!, c.width, c.height, palette);
      c.theme = palette.name;
    };
    const resize = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const id = (entry.target as HTMLElement).dataset.run!;
        const c = cards.get(id), v = views.get(id);
        if (!c) continue;
        c.width = entry.contentRect.width;
        c.height = entry.contentRect.height;
        if (v) paint(c, v, id);
      }
    });
    return {
      update(runs, next) {
        const themeChanged = next !== palette;
        palette = next;
        const keep = new Set(runs.map((r) => r.id));
        for (const [id, c] of cards) {
          if (!keep.has(id)) {
            resize.unobserve(c.canvas);
            c.card.remove();
            cards.delete(id);
            views.delete(id);
          }
        }
        runs.forEach((run, index) => {
          let c = cards.get(run.id);
          if (!c) {
            const canvas = h("canvas.bars", { "data-run": run.id });
            const info = h("span.bars-info", {}, "waiting for v⊙v…");
            const swatch = h("i.swatch", { style: `background:${run.colour}` });
            const card = h(
              "div.bars-card",
              {},
              h("div.bars-title", {}, swatch, run.label, info),
              canvas,
            );
            c = { card, canvas, info, swatch, frame: null, theme: null, width: 0, height: 0 };
            cards.set(run.id, c);
            resize.observe(canvas);
          }
          if (grid.children[index] !== c.card) {
            grid.insertBefore(c.card, grid.children[index] ?? null);
          }
          // Only runs with a new frame are redrawn, or all when the colours changed.
          let redraw = themeChanged || colours.get(run.id) !== run.colour;
          if (colours.get(run.id) !== run.colour) c.swatch.style.background = run.colour;
          colours.set(run.id, run.colour);
          const frame = run.frames.get(FRAME);
          if (frame && frame !== c.frame) {
            c.frame = frame;
            const view = summarise(run);
            if (view) {
              views.set(run.id, view);
              let support = 0;
              for (const m of view.mean) if (m > SUPPORT_THRESHOLD) support++;
              c.info.textContent = `step ${
                fmtSteps(view.step)
              } · support ${support} / ${view.width}`;
              redraw = true;
            }
          }
          const view = views.get(run.id);
          if (redraw && view && c.width > 0) paint(c, view, run.id);
        });
      },
      debug() {
        return Object.fromEntries(
          [...views].map(([id, v]) => [id, {
            step: v.step,
            width: v.width,
            r: v.r,
            mean: [...v.mean],
            theme: cards.get(id)?.theme ?? null,
          }]),
        );
      },
      destroy() {
        resize.disconnect();
        clear(container);
      },
    };
  },
});
