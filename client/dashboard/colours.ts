/**
 * Colour science the dashboard needs: OKLab (Björn Ottosson's perceptual space, in which
 * Euclidean distance ≈ perceived difference), the run palette built in it so that any two
 * runs' colours stay apart by a minimum distance, and the sequential scale sweep settings
 * are coloured on. Pure functions, no DOM.
 */
/** `#rrggbb` → [r, g, b]. */
export function hexRgb(hex: string): [number, number, number] {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** WCAG relative luminance of #rrggbb. */
export function luminance(hex: string): number {
  const lin = (c: number) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  const [r, g, b] = hexRgb(hex).map(lin);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** WCAG contrast ratio of two #rrggbb colours (1 to 21). */
export function contrast(a: string, b: string): number {
  const la = luminance(a), lb = luminance(b);
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

export type Oklab = [number, number, number];

const toLinear = (c: number) => {
  const s = c / 255;
  return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
};
const fromLinear = (c: number) =>
  255 * (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055);

export function hexToOklab(hex: string): Oklab {
  const [r, g, b] = hexRgb(hex).map(toLinear);
  const l = Math.cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
  const m = Math.cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
  const s = Math.cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
  return [
    0.2104542553 * l + 0.793617785 * m - 0.0040720468 * s,
    1.9779984951 * l - 2.428592205 * m + 0.4505937099 * s,
    0.0259040371 * l + 0.7827717662 * m - 0.808675766 * s,
  ];
}

/** OKLab → #rrggbb, or null when the colour lies outside sRGB. */
export function oklabToHex([L, a, b]: Oklab): string | null {
  const l = (L + 0.3963377774 * a + 0.2158037573 * b) ** 3;
  const m = (L - 0.1055613458 * a - 0.0638541728 * b) ** 3;
  const s = (L - 0.0894841775 * a - 1.291485548 * b) ** 3;
  const rgb = [
    4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s,
    -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s,
    -0.0041960863 * l - 0.7034186147 * m + 1.707614701 * s,
  ];
  if (rgb.some((c) => c < -1e-4 || c > 1 + 1e-4)) return null;
  return "#" +
    rgb.map((c) =>
      Math.round(fromLinear(Math.min(1, Math.max(0, c)))).toString(16).padStart(2, "0")
    )
      .join("");
}

/** ΔE in OKLab (Euclidean; 0.02 is about a just-noticeable difference). */
export function deltaE(x: string, y: string): number {
  const p = hexToOklab(x), q = hexToOklab(y);
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

/** Lightness band of run colours per theme: dark enough on white, light enough on the dark card. */
const LIGHTNESS: Record<"light" | "dark", number[]> = {
  light: [0.48, 0.56, 0.64],
  dark: [0.7, 0.78, 0.86],
};

/**
 * Run colours for a theme, as many as asked: the first is the lab's blue, each next one the
 * in-gamut candidate (OKLCH grid in the theme's lightness band, at least 3:1 against the
 * card) farthest from every colour already chosen. Slot i is the same colour for any
 * `count` > i, so a run keeps its colour as more runs arrive, and no colour repeats.
 */
export function generateRunColours(theme: "light" | "dark", card: string, count: number): string[] {
  const candidates: string[] = [];
  for (const L of LIGHTNESS[theme]) {
    for (const C of [0.1, 0.14, 0.18]) {
      for (let h = 0; h < 360; h += 6) {
        const rad = (h * Math.PI) / 180;
        const hex = oklabToHex([L, C * Math.cos(rad), C * Math.sin(rad)]);
        if (hex && contrast(hex, card) >= 3) candidates.push(hex);
      }
    }
  }
  const lab = candidates.map(hexToOklab);
  // Nearest chosen colour's distance, per candidate.
  const nearest = new Float64Array(candidates.length).fill(Infinity);
  const chosen: string[] = [];
  const choose = (i: number) => {
    chosen.push(candidates[i]);
    const [L, a, b] = lab[i];
    for (let k = 0; k < lab.length; k++) {
      const d = Math.hypot(lab[k][0] - L, lab[k][1] - a, lab[k][2] - b);
      if (d < nearest[k]) nearest[k] = d;
    }
  };
  // The lab's blue: the candidate nearest hue 260°, mid lightness, mid chroma.
  const blue = hexToOklab(theme === "light" ? "#3b6fd4" : "#6e9bff");
  let first = 0;
  for (let k = 1; k < lab.length; k++) {
    const d = (i: number) =>
      Math.hypot(lab[i][0] - blue[0], lab[i][1] - blue[1], lab[i][2] - blue[2]);
    if (d(k) < d(first)) first = k;
  }
  choose(first);
  while (chosen.length < count) {
    let best = 0;
    for (let k = 1; k < lab.length; k++) if (nearest[k] > nearest[best]) best = k;
    choose(best);
  }
  return chosen;
}

/**
 * Sequential scale for sweep settings: viridis' stops in OKLab, the part of it readable on
 * the theme's card (no pale yellow on white, no near-black purple on the dark card).
 */
const VIRIDIS = [
  "#440154",
  "#482878",
  "#3e4989",
  "#31688e",
  "#26828e",
  "#1f9e89",
  "#35b779",
  "#6ece58",
  "#b5de2b",
  "#fde725",
]
  .map(hexToOklab);
const SEQ_RANGE: Record<"light" | "dark", [number, number]> = {
  light: [0.0, 0.72],
  dark: [0.3, 1.0],
};

/** The colour at position t ∈ [0, 1] of the theme's sequential scale. */
export function sequentialColour(t: number, theme: "light" | "dark"): string {
  const [a, b] = SEQ_RANGE[theme];
  const u = (a + (b - a) * Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0.5))) *
    (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(u)), f = u - i;
  const mix = VIRIDIS[i].map((v, k) => v + (VIRIDIS[i + 1][k] - v) * f) as Oklab;
  return oklabToHex(mix) ?? "#808080";
}
