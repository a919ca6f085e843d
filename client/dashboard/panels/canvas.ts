/** Canvas plumbing the panels share. */

/**
 * Sizes a canvas's backing store to `cssW × cssH` CSS pixels at the device pixel ratio (only
 * when it changed, since resizing clears and reallocates), scales the context so drawing is in
 * CSS pixels, and clears it.
 */
export function prepareCanvas(
  canvas: HTMLCanvasElement,
  cssW: number,
  cssH: number,
): CanvasRenderingContext2D {
  const dpr = globalThis.devicePixelRatio || 1;
  const w = Math.round(cssW * dpr), h = Math.round(cssH * dpr);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  return ctx;
}

/** An axis-aligned box in CSS pixels. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * Labels beside points that coincide (runs that follow the same path, replicas that end
 * together) would print on top of each other; a label is written only where it keeps `gap`
 * from every label already written. Returns whether `box` is free, and if so records it.
 */
export function claimLabelBox(taken: Box[], box: Box, gap = 2): boolean {
  for (const t of taken) {
    if (
      box.x < t.x + t.w + gap && t.x < box.x + box.w + gap &&
      box.y < t.y + t.h + gap && t.y < box.y + box.h + gap
    ) return false;
  }
  taken.push(box);
  return true;
}
