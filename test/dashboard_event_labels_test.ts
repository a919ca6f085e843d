/**
 * Event marker labels on the charts (client/dashboard/event_labels.ts): placed beside their
 * markers in a few rows, never overlapping, dropped only when no row has room; and the
 * cursor's lookup of the markers under it, which names the events whose labels were dropped.
 */
import assert from "node:assert/strict";
import {
  eventDescription,
  eventLabel,
  type LabelArea,
  type LabelRequest,
  type LabelSpot,
  nearestMarkers,
  placeLabels,
} from "../client/dashboard/event_labels.ts";

const AREA: LabelArea = { left: 0, right: 500, rows: 3, offset: 3, gap: 6 };

/** Mulberry32: a small seeded generator, so a failing case can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Would a label at [left, left + width) touch `other` (closer than the gap)? */
function touches(left: number, width: number, other: [number, number], gap: number): boolean {
  return left < other[1] + gap && left + width + gap > other[0];
}

/** Checks every promise placeLabels makes, for any input. */
function checkPlacement(markers: LabelRequest[], area: LabelArea, spots: (LabelSpot | null)[]) {
  assert.equal(spots.length, markers.length);
  const placed: { i: number; row: number; span: [number, number] }[] = [];
  spots.forEach((s, i) => {
    if (!s) return;
    const { x, width } = markers[i];
    assert.ok(s.row >= 0 && s.row < area.rows && Number.isInteger(s.row), `row ${s.row}`);
    assert.ok(s.left >= area.left && s.left + width <= area.right, `label ${i} inside the plot`);
    // Beside its own marker: right of it, or left of it only when the right side is too narrow.
    if (x + area.offset + width <= area.right) assert.equal(s.left, x + area.offset);
    else assert.equal(s.left, x - area.offset - width);
    placed.push({ i, row: s.row, span: [s.left, s.left + width] });
  });
  for (const a of placed) {
    for (const b of placed) {
      if (a.i < b.i && a.row === b.row) {
        assert.ok(
          !touches(a.span[0], a.span[1] - a.span[0], b.span, area.gap),
          `labels ${a.i} and ${b.i} overlap in row ${a.row}`,
        );
      }
    }
  }
  // A label is dropped only when it fits on neither side, or every row has one it touches.
  spots.forEach((s, i) => {
    if (s) return;
    const { x, width } = markers[i];
    let left = x + area.offset;
    if (left + width > area.right) left = x - area.offset - width;
    if (left < area.left || left + width > area.right) return;
    for (let row = 0; row < area.rows; row++) {
      assert.ok(
        placed.some((p) => p.row === row && touches(left, width, p.span, area.gap)),
        `label ${i} was dropped though row ${row} had room`,
      );
    }
  });
  return placed.length;
}

Deno.test("event labels: side by side in one row when they fit", () => {
  const markers = [{ x: 10, width: 40 }, { x: 60, width: 40 }, { x: 110, width: 40 }];
  assert.deepEqual(placeLabels(markers, { ...AREA, rows: 1 }), [
    { left: 13, row: 0 },
    { left: 63, row: 0 },
    { left: 113, row: 0 },
  ]);
});

Deno.test("event labels: colliding labels go to the next row, then are dropped", () => {
  const markers = [0, 10, 20, 30, 40, 50].map((x) => ({ x, width: 40 }));
  assert.deepEqual(placeLabels(markers, { ...AREA, rows: 2 }), [
    { left: 3, row: 0 }, // [3, 43]
    { left: 13, row: 1 }, // [13, 53]
    null,
    null,
    null, // [43, 83]: touches row 0's label (gap 6) and row 1's
    { left: 53, row: 0 }, // 43 + 6 ≤ 53
  ]);
  // One row: every other one.
  assert.deepEqual(
    placeLabels(markers, { ...AREA, rows: 1 }).map((s) => s?.left ?? null),
    [3, null, null, null, null, 53],
  );
});

Deno.test("event labels: flipped left at the right edge, dropped when neither side fits", () => {
  const area = { ...AREA, right: 100, rows: 1 };
  assert.deepEqual(placeLabels([{ x: 95, width: 20 }], area), [{ left: 72, row: 0 }]);
  assert.deepEqual(placeLabels([{ x: 10, width: 120 }], area), [null]);
  assert.deepEqual(placeLabels([{ x: 5, width: 97 }], area), [null]);
  // A label flipped left of a marker still finds the room left of a label placed before it.
  assert.deepEqual(placeLabels([{ x: 60, width: 30 }, { x: 60, width: 50 }], area), [
    { left: 63, row: 0 },
    { left: 7, row: 0 },
  ]);
  // Non-finite positions draw no label and do not block others.
  assert.deepEqual(placeLabels([{ x: NaN, width: 10 }, { x: 0, width: 10 }], area), [
    null,
    { left: 3, row: 0 },
  ]);
});

Deno.test("event labels: the result does not depend on the order of the markers", () => {
  const next = rng(7);
  const markers = Array.from({ length: 60 }, () => ({
    x: Math.round(next() * 500),
    width: 20 + Math.round(next() * 60),
  }));
  const spots = placeLabels(markers, AREA);
  const perm = markers.map((_, i) => i).sort(() => next() - 0.5);
  const shuffled = placeLabels(perm.map((i) => markers[i]), AREA);
  // Equal x keep input order, so compare only markers with a distinct x.
  const unique = (x: number) => markers.filter((m) => m.x === x).length === 1;
  perm.forEach((i, j) => {
    if (unique(markers[i].x)) assert.deepEqual(shuffled[j], spots[i], `marker ${i}`);
  });
});

Deno.test("event labels: never overlap, stay in the plot, are dropped only for lack of room", () => {
  const next = rng(20250101);
  let dropped = 0, shown = 0;
  for (let trial = 0; trial < 300; trial++) {
    const right = 150 + Math.round(next() * 700);
    const area = {
      left: 0,
      right,
      rows: 1 + Math.floor(next() * 4),
      offset: 3,
      gap: Math.round(next() * 8),
    };
    const n = Math.floor(next() * 80);
    const markers = Array.from({ length: n }, () => ({
      x: next() * right,
      width: 10 + next() * 90,
    }));
    const spots = placeLabels(markers, area);
    const placed = checkPlacement(markers, area, spots);
    shown += placed;
    dropped += n - placed;
  }
  assert.ok(dropped > 1000 && shown > 1000, `exercised both: ${shown} shown, ${dropped} dropped`);
});

Deno.test("event labels: 40 periodic noise on/off switches on a chart keep a few labels", () => {
  // The linear-label-noise periodic preset: a switch every 5000 of 200000 steps, on a plot
  // about 450 px wide: markers 11 px apart, labels 45 to 80 px wide.
  const markers = Array.from({ length: 39 }, (_, k) => ({
    x: ((k + 1) * 5000 / 200000) * 450,
    width: k % 2 === 0 ? 45 : 80,
  }));
  const spots = placeLabels(markers, { ...AREA, right: 450 });
  const n = checkPlacement(markers, { ...AREA, right: 450 }, spots);
  assert.ok(n >= 10 && n < 39, `${n} labels of 39`);
  assert.ok(spots.some((s) => s?.row === 2), "all three rows used");
});

Deno.test("nearest marker: within reach, the nearest and those at the same x", () => {
  const xs = [10, 50, 50.3, 52, 200];
  assert.deepEqual(nearestMarkers(xs, 49, 5), [1, 2]);
  assert.deepEqual(nearestMarkers(xs, 51.9, 5), [3]);
  assert.deepEqual(nearestMarkers(xs, 14, 5), [0]);
  assert.deepEqual(nearestMarkers(xs, 16, 5), []);
  assert.deepEqual(nearestMarkers(xs, 130, 5), []);
  assert.deepEqual(nearestMarkers([], 10, 5), []);
  assert.deepEqual(nearestMarkers(xs, NaN, 5), []);
  assert.deepEqual(nearestMarkers(xs, -10, 5), []); // uPlot's "cursor left the plot"
});

Deno.test("event descriptions: label, step and detail for the legend", () => {
  const off = { type: "noise_off" as const, step: 5000, detail: "periodic: off for 5000 steps" };
  assert.equal(eventLabel(off), "noise off");
  assert.equal(eventDescription(off), "noise off at step 5,000: periodic: off for 5000 steps");
  assert.equal(
    eventDescription({ type: "lr_change", step: 120000, factor: 0.1, lr_scale: 0.1 }),
    "lr ×0.1 at step 120,000",
  );
  // Phase names are written as words, not identifiers.
  assert.equal(eventLabel({ type: "phase_change", step: 1, phase: "noise_on" }), "noise on");
  assert.equal(
    eventLabel({ type: "phase_change", step: 1, phase: "regulariser_off" }),
    "regulariser off",
  );
  assert.equal(eventLabel({ type: "phase_change", step: 1, phase: "gd" }), "GD phase");
  // A note's label is its detail: not repeated.
  assert.equal(eventDescription({ type: "note", step: 7, detail: "x" }), "x at step 7");
});
