/**
 * Light and dark themes. The page's chrome reads CSS custom properties (style.css, keyed on
 * `<html data-theme>`); what is drawn on canvas (uPlot axes, bands, event markers, the
 * experiment panels, the PNG export) reads the palette here. The user's choice ("auto"
 * follows the system's prefers-color-scheme) lives in the view state and the URL.
 * Pure data and functions, except applyTheme (which sets the attribute on <html>).
 */

import { contrast, generateRunColours, hexRgb, luminance } from "./colours.ts";

export { contrast, hexRgb, luminance };

/** Run colours kept in the palette; later slots are generated on demand (runColour). */
const RUN_PALETTE_SIZE = 10;

export type ThemeChoice = "auto" | "light" | "dark";
export type ThemeName = "light" | "dark";

export const THEME_CHOICES: readonly ThemeChoice[] = ["auto", "light", "dark"];

export interface Palette {
  name: ThemeName;
  /** Page background and the cards' background (the PNG export's background too). */
  bg: string;
  card: string;
  text: string;
  muted: string;
  faint: string;
  /** uPlot axes: tick labels, grid lines, tick marks. */
  axis: string;
  grid: string;
  tick: string;
  /** Opacity of a run's min–max band and of its event marker lines. */
  bandAlpha: number;
  markerAlpha: number;
  /** Panels: grid lines, tick labels, axis titles. */
  panelGrid: string;
  panelLabel: string;
  panelTitle: string;
  /** Shape Matters: replica whiskers, the v* target outline and its shaded support. */
  whisker: string;
  target: string;
  targetShade: string;
  /** Dashed guides (√η, the signal = noise diagonal). */
  guide: string;
  /** Faded-trail colours: old frames near `trailFrom` (the card), recent near `trailTo`. */
  trailFrom: string;
  trailTo: string;
  /** Run colours, in the order runs are assigned them (colours.ts: pairwise ΔE_OK ≥ 0.1). */
  runs: readonly string[];
}

const LIGHT: Palette = {
  name: "light",
  bg: "#f4f5f7",
  card: "#ffffff",
  text: "#1d2128",
  muted: "#6b7280",
  faint: "#9aa1ab",
  axis: "#5f6672",
  grid: "#eef0f3",
  tick: "#e2e5e9",
  bandAlpha: 0.13,
  markerAlpha: 0.8,
  panelGrid: "#e6e8eb",
  panelLabel: "#8a8f98",
  panelTitle: "#5c5f66",
  whisker: "rgba(30,34,40,0.55)",
  target: "#111418",
  targetShade: "rgba(17,20,24,0.07)",
  guide: "#c4c8ce",
  trailFrom: "#ffffff",
  trailTo: "#1e2228",
  runs: generateRunColours("light", "#ffffff", RUN_PALETTE_SIZE),
};

const DARK: Palette = {
  name: "dark",
  bg: "#0f1217",
  card: "#181c23",
  text: "#e3e6eb",
  muted: "#9aa3b0",
  faint: "#6e7785",
  axis: "#a3abb8",
  grid: "#262b34",
  tick: "#333a45",
  bandAlpha: 0.2,
  markerAlpha: 0.75,
  panelGrid: "#2a303a",
  panelLabel: "#8d96a3",
  panelTitle: "#a3abb8",
  whisker: "rgba(230,233,238,0.55)",
  target: "#eef0f3",
  targetShade: "rgba(238,240,243,0.07)",
  guide: "#4a525e",
  trailFrom: "#181c23",
  trailTo: "#dfe3ea",
  runs: generateRunColours("dark", "#181c23", RUN_PALETTE_SIZE),
};

export const PALETTES: Readonly<Record<ThemeName, Palette>> = { light: LIGHT, dark: DARK };

/** The theme a choice shows: "auto" follows the system setting. */
export function resolveTheme(choice: ThemeChoice, systemDark: boolean): ThemeName {
  return choice === "auto" ? (systemDark ? "dark" : "light") : choice;
}

const extended: Record<ThemeName, string[]> = { light: [], dark: [] };

/**
 * A run's colour: the colour slot it was given, in the theme's palette; past the palette,
 * more colours from the same generator, so colours never repeat (each new one as far as
 * possible from all before it).
 */
export function runColour(slot: number, palette: Palette): string {
  const i = Math.max(0, Math.floor(slot));
  if (i < palette.runs.length) return palette.runs[i];
  const more = extended[palette.name];
  if (more.length <= i) {
    more.splice(
      0,
      more.length,
      ...generateRunColours(palette.name, palette.card, Math.max(2 * i, 32)),
    );
  }
  return more[i];
}

/** `a` and `b` (#rrggbb) mixed: t = 0 is `a`, 1 is `b`. */
export function mixHex(a: string, b: string, t: number): string {
  const x = hexRgb(a), y = hexRgb(b);
  const c = (i: number) => Math.round(x[i] + (y[i] - x[i]) * t);
  return `rgb(${c(0)},${c(1)},${c(2)})`;
}

/** Marks <html> with the theme shown, so style.css switches its custom properties. */
export function applyTheme(theme: ThemeName): void {
  document.documentElement.dataset.theme = theme;
}
