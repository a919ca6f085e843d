/**
 * linear-label-noise panel: the paper's per-neuron scatter (Fig. 1c and its bottom row). Per
 * shown run, every neuron of one replica as a point (x = ‖w_i‖ on a log axis, y =
 * cos(w_i, θ*)), at every frame received so far, later frames darker, the latest one in the
 * run's colour. Under label noise the cloud first slides left (phase I: norms shrink), then
 * splits to cos = ±1 (phase II: alignment); under SGD it stays where it started.
 * A slider replays the run frame by frame (▶ animates it); by default the view follows the
 * latest frame. The frame layout is [‖w_i‖ | <w_i, θ*> | a_i] per replica, m each.
 */
import { clear, fmtSteps, h } from "../dom.ts";
import { type PanelInstance, type PanelRun, registerPanel } from "./registry.ts";
import type { FrameRecord } from "../../../server/runs/records.ts";
import { prepareCanvas } from "./canvas.ts";
import { mixHex, type Palette, PALETTES, type ThemeName } from "../theme.ts";

const FRAME = "neurons";
/** Frames kept per run; beyond it every other old frame is dropped (the trail thins out). */
const MAX_FRAMES = 240;
/** Frames drawn as the trail, evenly spaced up to the shown one. */
const TRAIL = 40;

interface NeuronFrame {
  step: number;
  /** Per replica: ‖w_i‖, cos(w_i, θ*). */
  norm: Float32Array[];
  cos: Float32Array[];
}

/** A run's view: a frame history may come from the host (all frames) or be gathered here. */
type RunWithHistory = PanelRun & { frameHistory?: ReadonlyMap<string, readonly FrameRecord[]> };

function thetaNorm(run: PanelRun, m: number): number {
  const t = Number(run.spec.params.theta_norm ?? 0);
  return t > 0 ? t : Math.pow(m, -0.25);
}

function decode(run: PanelRun, f: FrameRecord): NeuronFrame | null {
  const m = Math.floor(f.width / 3);
  if (m <= 0) return null;
  const replicas = Math.floor(f.values.length / f.width);
  const star = thetaNorm(run, m);
  const norm: Float32Array[] = [], cos: Float32Array[] = [];
  for (let r = 0; r < replicas; r++) {
    const row = f.values.subarray(r * f.width, (r + 1) * f.width);
    const n = row.slice(0, m);
    const c = new Float32Array(m);
    for (let i = 0; i < m; i++) c[i] = n[i] > 0 ? row[m + i] / (n[i] * star) : 0;
    norm.push(n);
    cos.push(c);
  }
  return { step: f.step, norm, cos };
}

interface Card {
  card: HTMLElement;
  canvas: HTMLCanvasElement;
  info: HTMLElement;
  slider: HTMLInputElement;
  play: HTMLButtonElement;
  replica: HTMLSelectElement;
  frames: NeuronFrame[];
  lastSeen: FrameRecord | null;
  /** Index of the frame shown, or -1 to follow the latest. */
  shown: number;
  timer: ReturnType<typeof setInterval> | 0;
  run: PanelRun;
  swatch: HTMLElement;
  /** The theme's colours, and the theme the canvas was last drawn in. */
  palette: Palette;
  theme: ThemeName | null;
  width: number;
  height: number;
}

function draw(c: Card): void {
  const { canvas, frames } = c;
  const cssW = c.width, cssH = c.height;
  if (cssW <= 0 || cssH <= 0) return;
  const ctx = prepareCanvas(canvas, cssW, cssH);
  const p = c.palette;
  c.theme = p.name;
  if (!frames.length) return;
  const rep = Math.min(Number(c.replica.value) || 0, frames[0].norm.length - 1);
  const last = c.shown < 0 ? frames.length - 1 : Math.min(c.shown, frames.length - 1);
  // x range over the whole history, so the axes stay put while replaying.
  let lo = Infinity, hi = -Infinity;
  for (const f of frames) {
    for (const v of f.norm[rep]) {
      if (v > 0 && Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  }
  if (!(hi > 0)) return;
  const lx0 = Math.floor(Math.log10(lo) * 4) / 4, lx1 = Math.ceil(Math.log10(hi) * 4) / 4 + 0.01;
  const padL = 30, padR = 8, padT = 8, padB = 20;
  const w = cssW - padL - padR, hgt = cssH - padT - padB;
  const x = (v: number) => padL + w * (Math.log10(v) - lx0) / (lx1 - lx0);
  const y = (v: number) => padT + hgt * (1 - (v + 1) / 2);
  ctx.font = "10px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.strokeStyle = p.panelGrid;
  ctx.fillStyle = p.panelLabel;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of [-1, -0.5, 0, 0.5, 1]) {
    ctx.beginPath();
    ctx.moveTo(padL, Math.round(y(t)) + 0.5);
    ctx.lineTo(padL + w, Math.round(y(t)) + 0.5);
    ctx.stroke();
    ctx.fillText(String(t), padL - 4, y(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let e = Math.floor(lx0); e <= Math.floor(lx1); e++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (Math.log10(v) < lx0 || Math.log10(v) > lx1) continue;
      ctx.fillText(k === 1 ? `1e${e}` : String(k), x(v), padT + hgt + 4);
    }
  }
  // √η: the paper's phase-II entry (all ‖w_i‖ and |a_i| below it).
  const lr = Number(
    Array.isArray(c.run.spec.params.lr) ? c.run.spec.params.lr[rep] : c.run.spec.params.lr,
  );
  if (lr > 0 && Math.log10(Math.sqrt(lr)) > lx0 && Math.log10(Math.sqrt(lr)) < lx1) {
    ctx.strokeStyle = p.guide;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(Math.round(x(Math.sqrt(lr))) + 0.5, padT);
    ctx.lineTo(Math.round(x(Math.sqrt(lr))) + 0.5, padT + hgt);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.textAlign = "left";
    ctx.fillText("√η", x(Math.sqrt(lr)) + 3, padT);
  }
  // The trail: up to TRAIL frames evenly spaced before the shown one, light to dark.
  const stride = Math.max(1, Math.ceil(last / TRAIL));
  const trail: number[] = [];
  for (let k = last % stride; k < last; k += stride) trail.push(k);
  trail.forEach((k, j) => {
    ctx.fillStyle = mixHex(p.trailFrom, p.trailTo, 0.12 + 0.5 * (j + 1) / (trail.length + 1));
    const f = frames[k];
    for (let i = 0; i < f.norm[rep].length; i++) {
      const v = f.norm[rep][i];
      if (v > 0 && Number.isFinite(v)) ctx.fillRect(x(v) - 1, y(f.cos[rep][i]) - 1, 2, 2);
    }
  });
  const f = frames[last];
  ctx.fillStyle = c.run.colour;
  for (let i = 0; i < f.norm[rep].length; i++) {
    const v = f.norm[rep][i];
    if (v > 0 && Number.isFinite(v)) ctx.fillRect(x(v) - 1.5, y(f.cos[rep][i]) - 1.5, 3, 3);
  }
}

function describe(c: Card): void {
  const n = c.frames.length;
  const k = c.shown < 0 ? n - 1 : Math.min(c.shown, n - 1);
  c.slider.max = String(Math.max(0, n - 1));
  c.slider.value = String(Math.max(0, k));
  if (k < 0) return;
  const f = c.frames[k];
  const rep = Math.min(Number(c.replica.value) || 0, f.norm.length - 1);
  let mean = 0, aligned = 0;
  for (let i = 0; i < f.norm[rep].length; i++) {
    mean += f.norm[rep][i];
    if (Math.abs(f.cos[rep][i]) > 0.9) aligned++;
  }
  const m = f.norm[rep].length;
  c.info.textContent = `step ${fmtSteps(f.step)} · mean ‖w‖ ${(mean / m).toPrecision(3)} · ` +
    `|cos| > 0.9: ${aligned}/${m}${c.shown < 0 ? "" : " (replay)"}`;
}

/** Adds frames not seen yet; thins the history beyond MAX_FRAMES. */
function ingest(c: Card, run: RunWithHistory): boolean {
  const history = run.frameHistory?.get(FRAME);
  const incoming = history ?? (run.frames.get(FRAME) ? [run.frames.get(FRAME)!] : []);
  let added = false;
  const lastStep = c.frames.length ? c.frames[c.frames.length - 1].step : -1;
  for (const rec of incoming) {
    if (rec.step <= lastStep || rec === c.lastSeen) continue;
    const f = decode(run, rec);
    if (!f) continue;
    c.frames.push(f);
    c.lastSeen = rec;
    added = true;
  }
  while (c.frames.length > MAX_FRAMES) {
    // Keep the first and the recent half; drop every other frame of the older half.
    const half = Math.floor(c.frames.length / 2);
    c.frames = [...c.frames.slice(0, half).filter((_, i) => i % 2 === 0), ...c.frames.slice(half)];
  }
  return added;
}

registerPanel("linear-label-noise", {
  title: "Neurons: cos(w_i, θ*) against ‖w_i‖ (Fig. 1c, bottom); later frames darker",
  frames: [FRAME],
  create(container): PanelInstance {
    const cards = new Map<string, Card>();
    // Wider cards than the bar panels: a scatter needs room along the log-norm axis.
    const grid = h("div.bars-grid", {
      style: "grid-template-columns:repeat(auto-fill,minmax(440px,1fr))",
    });
    container.append(grid);
    const resize = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const c = cards.get((entry.target as HTMLElement).dataset.run!);
        if (!c) continue;
        c.width = entry.contentRect.width;
        c.height = entry.contentRect.height;
        draw(c);
      }
    });
    function stop(c: Card) {
      if (c.timer) clearInterval(c.timer);
      c.timer = 0;
      c.play.textContent = "▶";
    }
    function makeCard(run: PanelRun): Card {
      const canvas = h("canvas", {
        "data-run": run.id,
        style: "width:100%;height:300px;display:block",
      });
      const info = h("span.bars-info", {}, "waiting for frames…");
      const slider = h("input", { type: "range", min: "0", max: "0", value: "0", style: "flex:1" });
      const play = h("button", { title: "replay the frames" }, "▶");
      const replica = h("select", { title: "replica" });
      const swatch = h("i.swatch", { style: `background:${run.colour}` });
      const c: Card = {
        card: h(
          "div.bars-card",
          {},
          h("div.bars-title", {}, swatch, run.label, info),
          canvas,
          h("div", { style: "display:flex;gap:6px;align-items:center" }, play, slider, replica),
        ),
        canvas,
        info,
        slider,
        play,
        replica,
        frames: [],
        lastSeen: null,
        shown: -1,
        timer: 0,
        run,
        swatch,
        palette: PALETTES.light,
        theme: null,
        width: 0,
        height: 0,
      };
      slider.addEventListener("input", () => {
        stop(c);
        const k = Number(slider.value);
        c.shown = k >= c.frames.length - 1 ? -1 : k;
        describe(c);
        draw(c);
      });
      replica.addEventListener("change", () => (describe(c), draw(c)));
      play.addEventListener("click", () => {
        if (c.timer) return stop(c);
        c.shown = 0;
        play.textContent = "❚❚";
        c.timer = globalThis.setInterval(() => {
          c.shown++;
          if (c.shown >= c.frames.length - 1) {
            c.shown = -1;
            stop(c);
          }
          describe(c);
          draw(c);
        }, 120);
      });
      return c;
    }
    return {
      update(runs, palette) {
        const keep = new Set(runs.map((r) => r.id));
        for (const [id, c] of cards) {
          if (keep.has(id)) continue;
          stop(c);
          resize.unobserve(c.canvas);
          c.card.remove();
          cards.delete(id);
        }
        runs.forEach((run, index) => {
          let c = cards.get(run.id);
          if (!c) {
            c = makeCard(run);
            cards.set(run.id, c);
            resize.observe(c.canvas);
          }
          const recolour = c.palette !== palette || c.run.colour !== run.colour;
          c.run = run;
          c.palette = palette;
          if (grid.children[index] !== c.card) {
            grid.insertBefore(c.card, grid.children[index] ?? null);
          }
          if (recolour) c.swatch.style.background = run.colour;
          if (!ingest(c, run)) {
            if (recolour) draw(c);
            return;
          }
          const replicas = c.frames[0].norm.length;
          if (c.replica.options.length !== replicas) {
            clear(c.replica);
            for (let r = 0; r < replicas; r++) {
              c.replica.append(h("option", { value: String(r) }, `replica ${r}`));
            }
            c.replica.style.display = replicas > 1 ? "" : "none";
          }
          describe(c);
          draw(c);
        });
      },
      debug() {
        return Object.fromEntries(
          [...cards].map(([id, c]) => [id, {
            frames: c.frames.map((f) => f.step),
            shown: c.shown,
            theme: c.theme,
          }]),
        );
      },
      destroy() {
        for (const c of cards.values()) stop(c);
        resize.disconnect();
        clear(container);
      },
    };
  },
});
