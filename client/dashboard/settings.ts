/**
 * A run's sweep settings: which replicas share a setting (the same swept values, different
 * seeds), how each setting is named ("lr=0.01 · δ=1") and coloured. The run header's `sweep`
 * field (docs/sweeps.md) says it; runs written before it existed still have per-replica
 * parameter lists in their spec (`lr: [0.01, 0.02, …]`), from which the same grouping is
 * derived, so such runs are drawn per setting too and never averaged across settings.
 * Pure functions, no DOM.
 */
import type { ParamSchema } from "../../server/experiments/schema.ts";
import type { RunSpec } from "../../server/experiments/types.ts";
import { sequentialColour } from "./colours.ts";
import type { Palette } from "./theme.ts";

export type SweepValue = number | string;

/** The header's `sweep` field, as docs/sweeps.md defines it. */
export interface SweepInfo {
  params: string[];
  values: Record<string, SweepValue[]>;
  scale: Record<string, "log" | "linear">;
  seeds: number;
  settings: Array<Record<string, SweepValue>>;
}

export interface Setting {
  /** Swept values of this setting (no `seed`). */
  values: Record<string, SweepValue>;
  /** Replica indices of its seeds, in replica order. */
  replicas: number[];
  /** "lr=0.01 · δ=1". */
  label: string;
}

export interface RunSettings {
  params: string[];
  scale: Record<string, "log" | "linear">;
  /** Every value each parameter takes, sorted (numbers ascending). */
  values: Record<string, SweepValue[]>;
  settings: Setting[];
  /** Per replica: its setting's index and its seed index within the setting. */
  settingOf: Int32Array;
  seedOf: Int32Array;
}

/** Short names for the parameters whose paper symbol is a Greek letter. */
const SYMBOLS: Record<string, string> = {
  delta: "δ",
  sigma: "σ",
  sigma_p: "σ_p",
  lambda: "λ",
  tau: "τ",
  eta: "η",
};

export function paramSymbol(name: string): string {
  return SYMBOLS[name] ?? name;
}

export function formatValue(v: SweepValue): string {
  if (typeof v === "string") return v;
  return Number(v.toPrecision(4)).toString();
}

export function settingLabel(values: Record<string, SweepValue>, params: string[]): string {
  return params.map((p) => `${paramSymbol(p)}=${formatValue(values[p])}`).join(" · ");
}

const sortValues = (vs: SweepValue[]): SweepValue[] =>
  [...new Set(vs)].sort((a, b) =>
    typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))
  );

/** Groups replicas by their per-replica objects (all keys but `seed`), in replica order. */
function fromPerReplica(
  params: string[],
  scale: Record<string, "log" | "linear">,
  perReplica: Array<Record<string, SweepValue>>,
): RunSettings {
  const R = perReplica.length;
  const byKey = new Map<string, number>();
  const settings: Setting[] = [];
  const settingOf = new Int32Array(R), seedOf = new Int32Array(R);
  for (let r = 0; r < R; r++) {
    const values: Record<string, SweepValue> = {};
    for (const p of params) values[p] = perReplica[r][p];
    const key = JSON.stringify(params.map((p) => values[p]));
    let s = byKey.get(key);
    if (s === undefined) {
      s = settings.length;
      byKey.set(key, s);
      settings.push({ values, replicas: [], label: settingLabel(values, params) });
    }
    settingOf[r] = s;
    seedOf[r] = settings[s].replicas.length;
    settings[s].replicas.push(r);
  }
  const values: Record<string, SweepValue[]> = {};
  for (const p of params) values[p] = sortValues(settings.map((s) => s.values[p]));
  return { params, scale, values, settings, settingOf, seedOf };
}

/**
 * The settings of a run: from the header's `sweep` when it has one, else from the spec's
 * per-replica parameter lists whose values differ; null when every replica has the same
 * setting (a plain run: drawn as one line with its band over all replicas). A noise-pair run
 * (large-lr's `noise_pairs=on`) adds the setting `noise` = on / off to either.
 */
export function runSettings(
  spec: RunSpec | null,
  sweep: SweepInfo | undefined | null,
  schema?: ParamSchema,
): RunSettings | null {
  return withNoisePairs(spec, sweepSettings(spec, sweep, schema));
}

/**
 * large-lr's `noise_pairs=on` (docs/experiments/large-lr.md "Noise pairs"): replicas
 * R/2..R−1 repeat 0..R/2−1 without the algorithm's noise, so the two halves are two settings
 * (`noise` = on / off), never one band; with a sweep, `noise` is one more parameter.
 */
function withNoisePairs(spec: RunSpec | null, rs: RunSettings | null): RunSettings | null {
  const R = spec?.replicas ?? 0;
  if (spec?.params?.noise_pairs !== "on" || R < 2 || R % 2) return rs;
  const perReplica = Array.from({ length: R }, (_, r) => ({
    ...(rs ? rs.settings[rs.settingOf[r]].values : {}),
    noise: r < R / 2 ? "on" : "off",
  }));
  const params = [...(rs?.params ?? []), "noise"];
  return fromPerReplica(params, { ...rs?.scale, noise: "linear" }, perReplica);
}

function sweepSettings(
  spec: RunSpec | null,
  sweep: SweepInfo | undefined | null,
  schema?: ParamSchema,
): RunSettings | null {
  if (sweep && sweep.params.length && sweep.settings.length) {
    return fromPerReplica(sweep.params, sweep.scale, sweep.settings);
  }
  if (!spec) return null;
  const R = spec.replicas;
  const params: string[] = [];
  for (const [name, value] of Object.entries(spec.params ?? {})) {
    if (!Array.isArray(value) || value.length !== R || R < 2) continue;
    if (!value.every((v) => typeof v === "number" || typeof v === "string")) continue;
    // A schedule is a list of pairs; only flat per-replica lists are swept values.
    if (new Set(value).size > 1) params.push(name);
  }
  if (!params.length) return null;
  const scale: Record<string, "log" | "linear"> = {};
  for (const p of params) {
    const def = schema?.[p];
    const values = (spec.params[p] as number[]).filter((v) => typeof v === "number");
    const positive = values.length > 0 && values.every((v) => v > 0);
    scale[p] = def && "log" in def && def.log && positive ? "log" : "linear";
  }
  const perReplica = Array.from({ length: R }, (_, r) => {
    const o: Record<string, SweepValue> = {};
    for (const p of params) o[p] = (spec.params[p] as SweepValue[])[r];
    return o;
  });
  return fromPerReplica(params, scale, perReplica);
}

/** Position of a value along a parameter's axis in [0, 1] (log-aware; categories by rank). */
export function axisPosition(rs: RunSettings, param: string, v: SweepValue): number {
  const all = rs.values[param];
  if (typeof v !== "number") {
    return all.length > 1 ? all.indexOf(v) / (all.length - 1) : 0.5;
  }
  const nums = all.filter((x): x is number => typeof x === "number");
  const log = rs.scale[param] === "log";
  const t = (x: number) => (log ? Math.log(x) : x);
  const lo = t(nums[0]), hi = t(nums[nums.length - 1]);
  return hi > lo ? (t(v) - lo) / (hi - lo) : 0.5;
}

/** The parameter the colour follows: the one with the most values (the first on a tie). */
export function colourParam(rs: RunSettings): string {
  let best = rs.params[0];
  for (const p of rs.params) if (rs.values[p].length > rs.values[best].length) best = p;
  return best;
}

/** Dash patterns for a second swept parameter's values (solid first). */
const DASHES: number[][] = [[], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3]];

export interface SettingStyle {
  colour: string;
  dash: number[];
}

/**
 * Each setting's colour on the theme's sequential scale along the colour parameter, and a
 * dash pattern along the next parameter (when there is one), so no two settings of a 2-D
 * grid are drawn alike.
 */
export function settingStyles(rs: RunSettings, palette: Palette): SettingStyle[] {
  const cp = colourParam(rs);
  const other = rs.params.find((p) => p !== cp);
  return rs.settings.map((s) => ({
    colour: sequentialColour(axisPosition(rs, cp, s.values[cp]), palette.name),
    dash: other ? DASHES[rs.values[other].indexOf(s.values[other]) % DASHES.length] : [],
  }));
}
