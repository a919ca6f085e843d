/**
 * Experiment panels: figures that are not line charts (bars, scatter, phase planes, heat
 * maps), fed by a run's frames and/or its metric columns and events. An experiment registers
 * one renderer under its id; the dashboard creates it when a shown run belongs to that
 * experiment and calls update() in an animation frame (at most one per frame) whenever a
 * shown run received a frame, a snapshot or an event, or the theme changed. Panels draw in
 * the palette they are given (run colours, grid, labels) and redraw when it changes.
 */
import type { FrameRecord } from "../../../server/runs/records.ts";
import type { RunEvent, RunSpec } from "../../../server/experiments/types.ts";
import type { RunSeries } from "../series.ts";
import type { Palette } from "../theme.ts";

export interface PanelRun {
  id: string;
  label: string;
  colour: string;
  spec: RunSpec;
  /** Latest frame of each name this run streamed. */
  frames: ReadonlyMap<string, FrameRecord>;
  /** Earlier frames too, oldest first (bounded: thinned past a cap), for panels that animate. */
  frameHistory?: ReadonlyMap<string, readonly FrameRecord[]>;
  /** The run's metric columns (live, read-only: compare `series.version` to skip work). */
  readonly series?: RunSeries;
  /** Events received so far (planned and observed), in arrival order. */
  readonly events?: readonly RunEvent[];
}

export interface PanelInstance {
  /** `palette`: the theme's colours (runs' `colour` are already in it). */
  update(runs: PanelRun[], palette: Palette): void;
  /** What the panel currently shows, for tests (plain data, with the theme drawn in). */
  debug?(): unknown;
  destroy(): void;
}

export interface PanelDefinition {
  title: string;
  /** Frame names the panel needs; runs without any of them are passed all the same. */
  frames: string[];
  create(container: HTMLElement): PanelInstance;
}

const panels = new Map<string, PanelDefinition>();

export function registerPanel(experiment: string, panel: PanelDefinition): void {
  panels.set(experiment, panel);
}

export function panelFor(experiment: string): PanelDefinition | undefined {
  return panels.get(experiment);
}
