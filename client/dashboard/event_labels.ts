/**
 * Where the charts write their event markers' labels. Markers (vertical lines) are always
 * drawn; a label goes beside its marker in the first of a few rows where it overlaps no
 * label already placed, and is dropped when no row has room. The cursor then names the
 * events whose labels are not written (nearestMarkers, eventDescription). Pure functions,
 * positions in CSS pixels.
 */
import type { RunEvent } from "../../server/experiments/types.ts";
import { fmt } from "./dom.ts";

/** Phase names as the experiments emit them, where spacing them out is not enough. */
const PHASE_LABELS: Record<string, string> = { gd: "GD phase" };

/** The label written beside an event's marker. */
export function eventLabel(e: RunEvent): string {
  switch (e.type) {
    case "lr_change":
      return `lr ×${fmt(e.factor)}`;
    case "replica_diverged":
      return `replica ${e.replica} diverged`;
    case "phase_change":
      return PHASE_LABELS[e.phase] ?? e.phase.replaceAll("_", " ");
    case "noise_off":
      return "noise off";
    case "note":
      return e.detail;
    case "resumed":
      return "resumed";
  }
}

/** What the legend says of an event under the cursor: its label, step and detail. */
export function eventDescription(e: RunEvent): string {
  const label = eventLabel(e);
  const detail = "detail" in e && e.detail && e.detail !== label ? `: ${e.detail}` : "";
  return `${label} at step ${Math.round(e.step).toLocaleString("en-US")}${detail}`;
}

export interface LabelRequest {
  /** The marker's x. */
  x: number;
  /** The label's width. */
  width: number;
}

export interface LabelSpot {
  /** Left edge of the label. */
  left: number;
  /** Row, from 0 (the top one). */
  row: number;
}

export interface LabelArea {
  /** The plot's horizontal extent: labels stay inside it. */
  left: number;
  right: number;
  /** Rows available (at least 1). */
  rows: number;
  /** Space between a marker and its label. */
  offset: number;
  /** Least space between two labels in one row. */
  gap: number;
}

/**
 * Places labels left to right (by marker x; equal x keep their input order). A label sits
 * right of its marker, or left of it when it would cross the plot's right edge, in the first
 * row where it keeps `gap` from every label already there; it is dropped (null) when no row
 * has room or it fits on neither side. Per input, in input order: its spot or null.
 * So placed labels never overlap and lie within [left, right], and a label is only dropped
 * when every row holds a label it would touch.
 */
export function placeLabels(
  markers: readonly LabelRequest[],
  area: LabelArea,
): (LabelSpot | null)[] {
  const rows: [number, number][][] = Array.from({ length: Math.max(1, area.rows | 0) }, () => []);
  const out: (LabelSpot | null)[] = new Array(markers.length).fill(null);
  const order = markers.map((_, i) => i)
    .filter((i) => Number.isFinite(markers[i].x) && markers[i].width >= 0)
    .sort((a, b) => markers[a].x - markers[b].x || a - b);
  for (const i of order) {
    const { x, width } = markers[i];
    let left = x + area.offset;
    if (left + width > area.right) left = x - area.offset - width;
    if (left < area.left || left + width > area.right) continue;
    const right = left + width;
    const row = rows.findIndex((taken) =>
      taken.every(([a, b]) => left >= b + area.gap || right + area.gap <= a)
    );
    if (row < 0) continue;
    rows[row].push([left, right]);
    out[i] = { left, row };
  }
  return out;
}

/**
 * The markers nearest to the cursor, when the nearest lies within `reach`: its index and
 * those of the markers at the same x (within half a pixel), in input order; else [].
 */
export function nearestMarkers(xs: readonly number[], cursor: number, reach: number): number[] {
  let at = NaN, best = Infinity;
  for (const x of xs) {
    const d = Math.abs(x - cursor);
    if (d < best) [best, at] = [d, x];
  }
  if (!(best <= reach)) return [];
  const out: number[] = [];
  for (let i = 0; i < xs.length; i++) if (Math.abs(xs[i] - at) <= 0.5) out.push(i);
  return out;
}
