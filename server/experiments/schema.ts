/**
 * Parameter schemas and run-spec validation. Each experiment declares its parameters once
 * (default, range, one-line doc); the API validator, the CLI help and the dashboard form
 * are all derived from these declarations, so there is one source of truth per fact.
 * Everything here is JSON-serialisable so `GET /api/experiments` can ship it as is.
 */

export type ScheduleValue = Array<[number, number]>;
export type ParamValue = number | string | boolean | ScheduleValue | number[];

interface ParamBase {
  doc: string;
  /** Where the default comes from (paper section, released code), shown in docs and help. */
  source?: string;
  /** Algorithms this parameter affects; absent means all. The form hides it otherwise. */
  appliesTo?: string[];
}

export interface NumberParam extends ParamBase {
  kind: "number" | "int";
  default: number;
  min: number;
  max: number;
  /** May differ per replica: the value is then an array with one entry per replica. */
  perReplica?: boolean;
  /** Plotted and swept on a log scale (learning rates, noise levels). */
  log?: boolean;
}

export interface EnumParam extends ParamBase {
  kind: "enum";
  values: string[];
  default: string;
  /** One-line doc per value. */
  valueDocs?: Record<string, string>;
}

export interface BooleanParam extends ParamBase {
  kind: "boolean";
  default: boolean;
}

/** Piecewise-constant multiplier: [[step, factor], ...], factors compound from each step on. */
export interface ScheduleParam extends ParamBase {
  kind: "schedule";
  default: ScheduleValue;
  /** Defaults that depend on another parameter's value, e.g. {param: "algo", values: {...}}. */
  defaultBy?: { param: string; values: Record<string, ScheduleValue> };
}

export type ParamSpec = NumberParam | EnumParam | BooleanParam | ScheduleParam;
export type ParamSchema = Record<string, ParamSpec>;

export interface MetricSpec {
  name: string;
  doc: string;
  /** Suggested y scale for charts. */
  scale?: "linear" | "log";
  /**
   * Whether charts may smooth it (default true). False for step functions (a learning rate,
   * a phase, a count), which smoothing would turn into a gradual change that never happened.
   */
  smooth?: boolean;
}

export type Params = Record<string, ParamValue>;

export interface FieldError {
  field: string;
  message: string;
}

export class SpecError extends Error {
  constructor(public readonly errors: FieldError[]) {
    super(errors.map((e) => `${e.field}: ${e.message}`).join("; "));
    this.name = "SpecError";
  }
}

export function describeAllowed(spec: ParamSpec): string {
  switch (spec.kind) {
    case "int":
      return `an integer in [${spec.min}, ${spec.max}]${
        spec.perReplica ? " (or one per replica)" : ""
      }`;
    case "number":
      return `a number in [${spec.min}, ${spec.max}]${
        spec.perReplica ? " (or an array with one per replica)" : ""
      }`;
    case "enum":
      return `one of ${spec.values.join(", ")}`;
    case "boolean":
      return "true or false";
    case "schedule":
      return "a list of [step, factor] pairs with increasing steps and positive factors, e.g. [[100000,0.1],[200000,0.1]]";
  }
}

function checkNumber(
  spec: NumberParam,
  value: unknown,
  field: string,
  errors: FieldError[],
): number | undefined {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    errors.push({
      field,
      message: `must be ${describeAllowed(spec)}, got ${JSON.stringify(value)}`,
    });
    return undefined;
  }
  if (spec.kind === "int" && !Number.isInteger(value)) {
    errors.push({ field, message: `must be ${describeAllowed(spec)}, got ${value}` });
    return undefined;
  }
  if (value < spec.min || value > spec.max) {
    errors.push({ field, message: `must be ${describeAllowed(spec)}, got ${value}` });
    return undefined;
  }
  return value;
}

/** Validates one parameter; pushes errors naming the field and what is allowed. */
export function validateParam(
  name: string,
  spec: ParamSpec,
  value: unknown,
  replicas: number,
  errors: FieldError[],
): ParamValue | undefined {
  const field = `params.${name}`;
  switch (spec.kind) {
    case "int":
    case "number": {
      if (Array.isArray(value)) {
        if (!spec.perReplica) {
          errors.push({ field, message: `must be a single value: ${describeAllowed(spec)}` });
          return undefined;
        }
        if (value.length !== replicas) {
          errors.push({
            field,
            message: `has ${value.length} values but the run has ${replicas} replicas`,
          });
          return undefined;
        }
        const out: number[] = [];
        for (let i = 0; i < value.length; i++) {
          const v = checkNumber(spec, value[i], `${field}[${i}]`, errors);
          if (v === undefined) return undefined;
          out.push(v);
        }
        return out;
      }
      return checkNumber(spec, value, field, errors);
    }
    case "enum":
      if (typeof value !== "string" || !spec.values.includes(value)) {
        errors.push({
          field,
          message: `must be ${describeAllowed(spec)}, got ${JSON.stringify(value)}`,
        });
        return undefined;
      }
      return value;
    case "boolean":
      if (typeof value !== "boolean") {
        errors.push({ field, message: `must be true or false, got ${JSON.stringify(value)}` });
        return undefined;
      }
      return value;
    case "schedule": {
      const ok = Array.isArray(value) &&
        value.every((p, i) =>
          Array.isArray(p) && p.length === 2 && Number.isInteger(p[0]) && p[0] >= 0 &&
          typeof p[1] === "number" && Number.isFinite(p[1]) && p[1] > 0 &&
          (i === 0 || p[0] > (value[i - 1] as number[])[0])
        );
      if (!ok) {
        errors.push({
          field,
          message: `must be ${describeAllowed(spec)}, got ${JSON.stringify(value)}`,
        });
        return undefined;
      }
      return (value as ScheduleValue).map(([s, f]) => [s, f] as [number, number]);
    }
  }
}

/** The default of one parameter given the (already resolved) others. */
export function defaultOf(spec: ParamSpec, resolved: Params): ParamValue {
  if (spec.kind === "schedule" && spec.defaultBy) {
    const key = resolved[spec.defaultBy.param];
    if (typeof key === "string" && key in spec.defaultBy.values) {
      return spec.defaultBy.values[key];
    }
  }
  return spec.default;
}

/**
 * Resolves user params against a schema: unknown names are errors, missing ones take their
 * defaults. Enum parameters are resolved first so that dependent defaults can see them.
 */
export function resolveParams(
  schema: ParamSchema,
  input: Record<string, unknown>,
  replicas: number,
  errors: FieldError[],
): Params {
  const out: Params = {};
  // Own properties only: "constructor" or "__proto__" are not parameters of any experiment.
  for (const name of Object.keys(input)) {
    if (!Object.hasOwn(schema, name)) {
      errors.push({
        field: `params.${name}`,
        message: `unknown parameter; allowed: ${Object.keys(schema).join(", ")}`,
      });
    }
  }
  const order = Object.keys(schema).sort((a, b) =>
    Number(schema[a].kind !== "enum") - Number(schema[b].kind !== "enum")
  );
  for (const name of order) {
    const spec = schema[name];
    if (Object.hasOwn(input, name) && input[name] !== undefined) {
      const v = validateParam(name, spec, input[name], replicas, errors);
      if (v !== undefined) out[name] = v;
    } else {
      out[name] = defaultOf(spec, out);
    }
  }
  return out;
}

/** Per-replica view of a number parameter: always an array of length R. */
export function perReplica(value: ParamValue, replicas: number): Float64Array {
  if (Array.isArray(value)) return Float64Array.from(value as number[]);
  return new Float64Array(replicas).fill(value as number);
}

/** Multiplier of a piecewise-constant schedule in force at `step` (factors compound). */
export function scheduleFactor(schedule: ScheduleValue, step: number): number {
  let f = 1;
  for (const [at, factor] of schedule) if (step >= at) f *= factor;
  return f;
}

/** Parses a CLI string into the parameter's type (numbers, JSON arrays, booleans, enums). */
export function parseCliValue(spec: ParamSpec, raw: string): unknown {
  switch (spec.kind) {
    case "int":
    case "number": {
      if (raw.trim().startsWith("[")) {
        try {
          return JSON.parse(raw);
        } catch {
          return raw;
        }
      }
      if (spec.perReplica && raw.includes(",")) return raw.split(",").map(Number);
      const n = Number(raw);
      return raw.trim() === "" || Number.isNaN(n) ? raw : n;
    }
    case "boolean":
      return raw === "true" ? true : raw === "false" ? false : raw;
    case "schedule":
      if (raw === "" || raw === "none" || raw === "constant") return [];
      try {
        return JSON.parse(raw);
      } catch {
        return raw;
      }
    case "enum":
      return raw;
  }
}
