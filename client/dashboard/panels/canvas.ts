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
