/**
 * Sweeps: a grid of settings × seeds run as one batch, one replica per (setting, seed).
 *
 * A swept parameter is a per-replica number parameter given a list or a range:
 *   list   0.25,0.5,1,2          (also a JSON array in the API)
 *   range  1e-3..1e-1:5:log      5 values from 1e-3 to 1e-1, both ends included, log-spaced
 *          0..1:5  or 0..1:5:lin 5 evenly spaced values
 * (a space may stand for ':' and a leading x or × for the count, as "1e-3..1e-1 x5 log", so
 * the same text works in a shell and in a form field). The batch is the cartesian product of
 * the swept parameters' lists, in the order given (first = outermost), times `seeds` seed
 * indices (innermost): replica k = settingIndex·seeds + seedIndex. Parameters named in one
 * `zip` group vary together instead (equal-length lists, one grid axis at the place of the
 * group's first parameter), e.g. PEGR's σ_p with the σ0 the paper pairs with it.
 * The result is the contract's `sweep` object (docs/sweeps.md): the header, the stream's
 * hello, the CSV columns and the CLI's `settings` are all read from it.
 */
import type { FieldError, NumberParam, ParamSchema } from "./schema.ts";
import { describeAllowed } from "./schema.ts";

export interface SweepInfo {
  /** Swept parameter names, grid order, outermost first (never "seed"). */
  params: string[];
  values: Record<string, (number | string)[]>;
  scale: Record<string, "log" | "linear">;
  seeds: number;
  /** One object per replica, in replica order: each swept value and `seed` (0..seeds-1). */
  settings: Array<Record<string, number | string>>;
}

/** Most values one list or range may have (a grid is also bounded by the replica limit). */
export const MAX_SWEEP_VALUES = 10000;
export const MAX_SEEDS = 65536;
/** Grids larger than this are not built: the caller refuses them by count (replica limit). */
const MAX_SETTINGS_EXPANDED = 1 << 20;

const RANGE =
  /^\s*([^.\s:]+(?:\.[^.\s:]+)?)\s*\.\.\s*([^\s:]+)\s*[:\s]\s*[x×]?\s*(\d+)\s*(?:[:\s]\s*(log|lin|linear))?\s*$/i;

/** Shortest decimal that reads back as the value computed (ranges: no 0.30000000000000004). */
function clean(x: number): number {
  return Number(x.toPrecision(12));
}

/**
 * Parses one swept parameter's text (list or range) or JSON array into numbers. Returns
 * undefined after pushing an error naming the field.
 */
export function parseSweepValues(
  raw: unknown,
  field: string,
  errors: FieldError[],
): { values: number[]; log?: boolean } | undefined {
  const bad = (message: string) => {
    errors.push({ field, message });
    return undefined;
  };
  if (Array.isArray(raw)) {
    if (raw.length === 0) return bad("needs at least one value");
    if (raw.length > MAX_SWEEP_VALUES) return bad(`has over ${MAX_SWEEP_VALUES} values`);
    for (let i = 0; i < raw.length; i++) {
      if (typeof raw[i] !== "number" || !Number.isFinite(raw[i])) {
        return bad(`value ${i} must be a finite number, got ${JSON.stringify(raw[i])}`);
      }
    }
    return { values: raw as number[] };
  }
  if (typeof raw === "number") return Number.isFinite(raw) ? { values: [raw] } : bad("not finite");
  if (typeof raw !== "string") {
    return bad(
      `must be a list (0.1,0.2 or [0.1,0.2]) or a range (1e-3..1e-1:5:log), got ${
        JSON.stringify(raw)
      }`,
    );
  }
  const m = RANGE.exec(raw);
  if (m) {
    const a = Number(m[1]), b = Number(m[2]), n = Number(m[3]);
    const log = (m[4] ?? "").toLowerCase() === "log";
    if (!Number.isFinite(a) || !Number.isFinite(b)) {
      return bad(`range ${JSON.stringify(raw)}: the ends must be numbers`);
    }
    if (n < 1 || n > MAX_SWEEP_VALUES) {
      return bad(`range ${JSON.stringify(raw)}: the count must be in [1, ${MAX_SWEEP_VALUES}]`);
    }
    if (log && (a <= 0 || b <= 0)) {
      return bad(`range ${JSON.stringify(raw)}: a log range needs positive ends`);
    }
    const values: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = n === 1 ? 0 : i / (n - 1);
      const v = i === 0
        ? a
        : i === n - 1
        ? b
        : log
        ? Math.exp(Math.log(a) + t * (Math.log(b) - Math.log(a)))
        : a + t * (b - a);
      values.push(clean(v));
    }
    return { values, log };
  }
  const parts = raw.split(",").map((s) => s.trim());
  const values = parts.map(Number);
  const i = values.findIndex((v, i) => parts[i] === "" || !Number.isFinite(v));
  if (i >= 0) {
    return bad(
      `${JSON.stringify(parts[i])} is not a number; write a list (0.1,0.2) or a range ` +
        "(1e-3..1e-1:5:log)",
    );
  }
  if (values.length > MAX_SWEEP_VALUES) return bad(`has over ${MAX_SWEEP_VALUES} values`);
  return { values };
}

/** Whether a text is a sweep (a list or a range) rather than one value. */
export function looksLikeSweep(raw: string): boolean {
  return !raw.trim().startsWith("[") && (raw.includes(",") || RANGE.test(raw));
}

export interface SweepInput {
  grid: Record<string, unknown>;
  zip: string[][];
  seeds: number;
}

/**
 * Expands a grid into per-replica arrays and the sweep description. Every value is checked
 * against the parameter's range here, so errors name the swept field and the bad value.
 */
export function expandSweep(
  schema: ParamSchema,
  input: SweepInput,
  errors: FieldError[],
): { arrays: Record<string, number[]>; sweep: SweepInfo; replicas: number } | undefined {
  const before = errors.length;
  const values: Record<string, number[]> = {};
  const scale: Record<string, "log" | "linear"> = {};
  const names = Object.keys(input.grid);
  for (const name of names) {
    const field = `grid.${name}`;
    const spec = Object.hasOwn(schema, name) ? schema[name] : undefined;
    if (!spec) {
      errors.push({
        field,
        message: `unknown parameter; allowed: ${sweepable(schema).join(", ")}`,
      });
      continue;
    }
    if ((spec.kind !== "number" && spec.kind !== "int") || !spec.perReplica) {
      errors.push({
        field,
        message: `cannot vary per replica (sweepable: ${
          sweepable(schema).join(", ")
        }); start one run per value`,
      });
      continue;
    }
    const parsed = parseSweepValues(input.grid[name], field, errors);
    if (!parsed) continue;
    const num = spec as NumberParam;
    const vals = num.kind === "int" ? parsed.values.map(Math.round) : parsed.values;
    const badAt = vals.findIndex((v) => v < num.min || v > num.max);
    if (badAt >= 0) {
      errors.push({ field, message: `must be ${describeAllowed(num)}, got ${vals[badAt]}` });
      continue;
    }
    values[name] = vals;
    scale[name] = parsed.log ?? (num.log === true && vals.every((v) => v > 0)) ? "log" : "linear";
  }
  // Axes: zip groups move together; every other swept parameter is an axis of its own.
  const grouped = new Map<string, string[]>();
  for (const group of input.zip) {
    for (const name of group) {
      if (!(name in input.grid)) {
        errors.push({ field: "zip", message: `${name} is zipped but has no list in grid` });
      } else if (grouped.has(name)) {
        errors.push({ field: "zip", message: `${name} is in two zip groups` });
      } else grouped.set(name, group);
    }
    const lengths = group.map((n) => values[n]?.length ?? 0);
    if (lengths.some((l) => l !== lengths[0])) {
      errors.push({
        field: "zip",
        message: `zipped lists must have equal lengths: ${
          group.map((n, i) => `${n} has ${lengths[i]}`).join(", ")
        }`,
      });
    }
  }
  if (errors.length > before) return undefined;
  const axes: string[][] = [];
  for (const name of names) {
    const group = grouped.get(name);
    if (!group) axes.push([name]);
    else if (!axes.includes(group)) axes.push(group);
  }
  let settingsCount = 1;
  for (const axis of axes) settingsCount *= values[axis[0]].length;
  const replicas = settingsCount * input.seeds;
  const sweep: SweepInfo = {
    params: axes.flat(),
    values,
    scale,
    seeds: input.seeds,
    settings: [],
  };
  const arrays: Record<string, number[]> = Object.fromEntries(sweep.params.map((n) => [n, []]));
  if (replicas > MAX_SETTINGS_EXPANDED) return { arrays, sweep, replicas };
  for (let s = 0; s < settingsCount; s++) {
    // Mixed-radix digits of s, the last axis fastest.
    const setting: Record<string, number> = {};
    let rest = s;
    for (let a = axes.length - 1; a >= 0; a--) {
      const len = values[axes[a][0]].length;
      const at = rest % len;
      rest = Math.floor(rest / len);
      for (const name of axes[a]) setting[name] = values[name][at];
    }
    const ordered: Record<string, number> = {};
    for (const name of sweep.params) ordered[name] = setting[name];
    for (let seed = 0; seed < input.seeds; seed++) {
      sweep.settings.push({ ...ordered, seed });
      for (const name of sweep.params) arrays[name].push(ordered[name]);
    }
  }
  return { arrays, sweep, replicas };
}

export function sweepable(schema: ParamSchema): string[] {
  return Object.entries(schema)
    .filter(([, s]) => (s.kind === "number" || s.kind === "int") && s.perReplica)
    .map(([n]) => n);
}

/** Replicas that share one setting (equal except `seed`), as groups of replica indices. */
export function settingGroups(sweep: SweepInfo): number[][] {
  const byKey = new Map<string, number[]>();
  sweep.settings.forEach((s, k) => {
    const key = JSON.stringify(sweep.params.map((p) => s[p]));
    const g = byKey.get(key);
    if (g) g.push(k);
    else byKey.set(key, [k]);
  });
  return [...byKey.values()];
}
