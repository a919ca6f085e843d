/**
 * The "new run" form, generated from the experiment's parameter schema (the one source of
 * truth): each parameter shows its default, range and doc; enum values show their docs;
 * parameters whose `appliesTo` excludes the chosen algorithm are hidden and not sent.
 * The server validates again and its field errors are shown next to the fields.
 */
import type { ParamSpec } from "../../server/experiments/schema.ts";
import { ApiError, type ExperimentInfo, type Health } from "./api.ts";
import { clear, h } from "./dom.ts";

/** The parameter that selects the algorithm, which `appliesTo` refers to. */
const ALGO_PARAM = "algo";

interface Field {
  name: string;
  spec: ParamSpec | null;
  wrap: HTMLElement;
  read(): unknown;
  /** What is wrong with the typed value, before anything is sent (null: nothing). */
  check?(): string | null;
  error: HTMLElement;
}

function rangeText(spec: ParamSpec): string {
  switch (spec.kind) {
    case "int":
    case "number":
      return `${spec.kind === "int" ? "integer " : ""}[${spec.min}, ${spec.max}]${
        spec.perReplica
          ? ", or one per replica (comma-separated, or a range: 1e-3..1e-1 ×5 log)"
          : ""
      }${spec.log ? ", log scale" : ""}`;
    case "enum":
      return spec.values.join(" | ");
    case "boolean":
      return "true | false";
    case "schedule":
      return "[[step, factor], …]; [] for constant";
  }
}

/** "1e-3..1e-1 ×5 log" (or "x5"): five values from 1e-3 to 1e-1, evenly spaced in log. */
const RANGE = /^([^.\s]+(?:\.\d*)?(?:e[+-]?\d+)?)\s*\.\.\s*(\S+?)\s*[×x*]\s*(\d+)\s*(log)?$/i;

/** The values of a range, or why it has none. */
export function expandRange(
  from: number,
  to: number,
  count: number,
  log: boolean,
): number[] | string {
  if (!Number.isFinite(from) || !Number.isFinite(to)) return "a range's ends must be numbers";
  if (!(count >= 2 && count <= 1024)) return "a range needs 2 to 1024 values";
  if (log && !(from > 0 && to > 0)) return "a log range needs positive ends";
  return Array.from({ length: count }, (_, i) => {
    const t = i / (count - 1);
    const v = log ? from * (to / from) ** t : from + (to - from) * t;
    return Number(v.toPrecision(12));
  });
}

export type Parsed = { ok: true; value: unknown } | { ok: false; message: string };

/**
 * Parses a number field: one number, or a comma list when the parameter is per replica.
 * Anything that is not a number is refused with a message naming the field (JSON would
 * send NaN as null, and the server would run with the default).
 */
export function parseNumberField(
  name: string,
  raw: string,
  spec: { kind: "int" | "number"; perReplica?: boolean },
): Parsed {
  const parts = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (!parts.length) return { ok: false, message: `${name}: enter a number` };
  if (parts.length > 1 && !spec.perReplica) {
    return { ok: false, message: `${name}: takes one number, got ${parts.length}` };
  }
  const nums: number[] = [];
  for (const p of parts) {
    const range = p.match(RANGE);
    if (range) {
      if (!spec.perReplica) return { ok: false, message: `${name}: takes one number, not a range` };
      const expanded = expandRange(
        Number(range[1]),
        Number(range[2]),
        Number(range[3]),
        !!range[4],
      );
      if (typeof expanded === "string") return { ok: false, message: `${name}: ${expanded}` };
      nums.push(...expanded);
      continue;
    }
    const v = Number(p);
    if (!Number.isFinite(v)) {
      return { ok: false, message: `${name}: ${JSON.stringify(p)} is not a number` };
    }
    if (spec.kind === "int" && !Number.isInteger(v)) {
      return { ok: false, message: `${name}: ${JSON.stringify(p)} is not an integer` };
    }
    nums.push(v);
  }
  return { ok: true, value: nums.length > 1 ? nums : nums[0] };
}

/** Tags typed as "a, b c": split on commas, trimmed, empty ones dropped, no repeats. */
export function parseTags(raw: string): string[] {
  return [...new Set(raw.split(",").map((t) => t.trim()).filter((t) => t))];
}

function showValue(v: unknown): string {
  return Array.isArray(v) && v.every((x) => typeof x === "number")
    ? v.join(", ")
    : JSON.stringify(v);
}

/**
 * A list or range typed into a per-replica field is a swept parameter (docs/sweeps.md), as on
 * the command line: lists go to `grid`, and with a grid or several seeds the replica count
 * follows from grid × seeds, so `replicas` is left out.
 */
export function sweepFromLists(
  spec: Record<string, unknown>,
  params: Record<string, unknown>,
  perReplica: ReadonlySet<string>,
) {
  const grid: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(params)) {
    if (!perReplica.has(name) || !Array.isArray(value)) continue;
    grid[name] = value;
    delete params[name];
  }
  const seeds = typeof spec.seeds === "number" ? spec.seeds : 1;
  if (Object.keys(grid).length === 0 && seeds <= 1) {
    delete spec.seeds;
    return;
  }
  if (Object.keys(grid).length) spec.grid = grid;
  delete spec.replicas;
}

export interface RunFormOptions {
  experiments: ExperimentInfo[];
  health: Health | null;
  submit(spec: Record<string, unknown>): Promise<string>;
}

export function runForm(opts: RunFormOptions): HTMLElement {
  const root = h("form.run-form", { novalidate: true });
  const body = h("div.form-fields");
  const status = h("div.form-status");
  let fields: Field[] = [];
  let experiment = opts.experiments[0];
  const expSelect = h(
    "select",
    { name: "experiment", onchange: () => build(expSelect.value) },
    ...opts.experiments.map((e) => h("option", { value: e.id }, e.id)),
  );
  const expDoc = h("div.field-doc");

  const build = (id: string) => {
    experiment = opts.experiments.find((e) => e.id === id)!;
    expDoc.textContent = `${experiment.title}. ${experiment.paper}`;
    clear(body);
    fields = [];
    for (const [name, spec] of Object.entries(experiment.params)) {
      fields.push(paramField(name, spec));
    }
    const d = experiment.defaults;
    fields.push(
      intField(
        "replicas",
        d.replicas,
        "independent replicas run side by side (a sweep's count follows from its grid × seeds)",
        1,
        65536,
      ),
      intField("seeds", 1, "repeat every setting of a sweep over this many seeds", 1, 65536),
    );
    fields.push(intField("steps", d.steps, "training steps", 0, 1e10));
    fields.push(intField("every", d.every, "steps between snapshots", 1, 1e10));
    fields.push(backendField());
    fields.push(...labelFields());
    for (const f of fields) body.append(f.wrap);
    applyAlgo();
  };

  const applyAlgo = () => {
    const algo = fields.find((f) => f.name === ALGO_PARAM)?.read();
    for (const f of fields) {
      const applies = !f.spec?.appliesTo || typeof algo !== "string" ||
        f.spec.appliesTo.includes(algo);
      f.wrap.hidden = !applies;
    }
  };

  const wrapField = (
    name: string,
    label: string,
    input: HTMLElement,
    doc: string,
    range: string,
    title?: string,
  ) => {
    const error = h("div.field-error");
    const wrap = h(
      "label.field",
      { "data-field": name, title: title ?? null },
      h("span.field-name", {}, label, h("span.field-range", {}, range)),
      input,
      h("span.field-doc", {}, doc),
      error,
    );
    return { wrap, error };
  };

  const paramField = (name: string, spec: ParamSpec): Field => {
    const title = spec.source ? `source: ${spec.source}` : undefined;
    switch (spec.kind) {
      case "enum": {
        const valueDoc = h("span.value-doc");
        const sel = h("select", { name }, ...spec.values.map((v) => h("option", { value: v }, v)));
        sel.value = spec.default;
        const showDoc = () => (valueDoc.textContent = spec.valueDocs?.[sel.value] ?? "");
        sel.addEventListener("change", () => {
          showDoc();
          if (name === ALGO_PARAM) {
            applyAlgo();
            // Defaults that depend on the algorithm follow it until the user edits them.
            for (const f of fields) {
              const s = f.spec;
              if (s?.kind === "schedule" && s.defaultBy?.param === name) {
                const input = f.wrap.querySelector("input")!;
                if (!input.dataset.edited) {
                  input.value = JSON.stringify(s.defaultBy.values[sel.value] ?? s.default);
                }
              }
            }
          }
        });
        showDoc();
        const { wrap, error } = wrapField(
          name,
          name,
          h("div.enum", {}, sel, valueDoc),
          spec.doc,
          `default ${spec.default}`,
          title,
        );
        return { name, spec, wrap, error, read: () => sel.value };
      }
      case "boolean": {
        const box = h("input", { type: "checkbox", name, checked: spec.default });
        const { wrap, error } = wrapField(
          name,
          name,
          box,
          spec.doc,
          `default ${spec.default}`,
          title,
        );
        return { name, spec, wrap, error, read: () => box.checked };
      }
      case "schedule": {
        const algoDefault = spec.defaultBy
          ? spec.defaultBy.values[String(experiment.params[spec.defaultBy.param]?.default)]
          : undefined;
        const input = h("input", {
          type: "text",
          name,
          value: JSON.stringify(algoDefault ?? spec.default),
          spellcheck: "false",
        });
        input.addEventListener("input", () => (input.dataset.edited = "1"));
        const { wrap, error } = wrapField(name, name, input, spec.doc, rangeText(spec), title);
        return {
          name,
          spec,
          wrap,
          error,
          read: () => {
            try {
              return JSON.parse(input.value || "[]");
            } catch {
              return input.value;
            }
          },
        };
      }
      case "int":
      case "number": {
        const input = h("input", {
          type: "text",
          inputmode: "decimal",
          name,
          value: showValue(spec.default),
          spellcheck: "false",
        });
        const { wrap, error } = wrapField(
          name,
          name,
          input,
          spec.doc,
          `${rangeText(spec)} · default ${spec.default}`,
          title,
        );
        const parse = () => parseNumberField(name, input.value, spec);
        return {
          name,
          spec,
          wrap,
          error,
          read: () => {
            const p = parse();
            return p.ok ? p.value : input.value;
          },
          check: () => {
            const p = parse();
            return p.ok ? null : p.message;
          },
        };
      }
    }
  };

  const intField = (name: string, value: number, doc: string, min: number, max: number): Field => {
    const input = h("input", { type: "text", inputmode: "numeric", name, value: String(value) });
    const { wrap, error } = wrapField(
      name,
      name,
      input,
      doc,
      `integer [${min}, ${max}] · default ${value}`,
    );
    const parse = () => parseNumberField(name, input.value, { kind: "int" });
    return {
      name,
      spec: null,
      wrap,
      error,
      read: () => {
        const p = parse();
        return p.ok ? p.value : input.value;
      },
      check: () => {
        const p = parse();
        return p.ok ? null : p.message;
      },
    };
  };

  /** The run's name and tags (shown and searchable in the runs list; editable there later). */
  const labelFields = (): Field[] => {
    const nameInput = h("input", { type: "text", name: "name", maxlength: "120" });
    const named = wrapField("name", "name", nameInput, "a label for the run (optional)", "");
    const tagsInput = h("input", { type: "text", name: "tags", spellcheck: "false" });
    const tagged = wrapField("tags", "tags", tagsInput, "comma-separated", "");
    return [
      { name: "name", spec: null, ...named, read: () => nameInput.value.trim() || undefined },
      {
        name: "tags",
        spec: null,
        ...tagged,
        read: () => {
          const tags = parseTags(tagsInput.value);
          return tags.length ? tags : undefined;
        },
      },
    ];
  };

  const backendField = (): Field => {
    const names = [
      "auto",
      ...Object.keys(opts.health?.backends ?? { wasm: {}, webgpu: {} }),
      "reference",
    ];
    const sel = h(
      "select",
      { name: "backend" },
      ...[...new Set(names)].map((b) => {
        const info = opts.health?.backends?.[b];
        const unavailable = info && !info.available;
        return h(
          "option",
          { value: b, disabled: unavailable ? true : null },
          unavailable ? `${b} (unavailable)` : b,
        );
      }),
    );
    const def = opts.health?.default_backend;
    const { wrap, error } = wrapField(
      "backend",
      "backend",
      sel,
      "where the kernels run (auto picks webgpu when an adapter exists)",
      def ? `auto = ${def}` : "",
    );
    return { name: "backend", spec: null, wrap, error, read: () => sel.value };
  };

  const submitButton = h("button.primary", { type: "submit" }, "Start run");
  root.append(
    h("label.field", {}, h("span.field-name", {}, "experiment"), expSelect, expDoc),
    body,
    h("div.form-actions", {}, submitButton, status),
  );
  root.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const f of fields) f.error.textContent = "";
    status.textContent = "";
    const params: Record<string, unknown> = {};
    const spec: Record<string, unknown> = { experiment: experiment.id, params };
    let refused = 0;
    for (const f of fields) {
      if (f.wrap.hidden) continue;
      const problem = f.check?.() ?? null;
      if (problem) {
        f.error.textContent = problem;
        refused++;
        continue;
      }
      const value = f.read();
      if (value === undefined) continue;
      if (f.spec) params[f.name] = value;
      else spec[f.name] = value;
    }
    if (!refused) {
      sweepFromLists(
        spec,
        params,
        new Set(
          fields.filter((f) => f.spec && "perReplica" in f.spec && f.spec.perReplica).map((f) =>
            f.name
          ),
        ),
      );
    }
    if (refused) {
      status.className = "form-status bad";
      status.textContent = "please fix the fields marked below";
      return;
    }
    submitButton.disabled = true;
    try {
      const id = await opts.submit(spec);
      status.textContent = `started ${id}`;
      status.className = "form-status ok";
    } catch (err) {
      status.className = "form-status bad";
      if (err instanceof ApiError && err.errors.length) {
        status.textContent = "please fix the fields marked below";
        for (const fe of err.errors) {
          const name = fe.field.replace(/^params\./, "").replace(/\[\d+\]$/, "");
          const f = fields.find((x) => x.name === name);
          if (f) f.error.textContent = fe.message;
          else status.textContent += ` · ${fe.field}: ${fe.message}`;
        }
      } else status.textContent = String(err instanceof Error ? err.message : err);
    } finally {
      submitButton.disabled = false;
    }
  });
  if (experiment) build(experiment.id);
  return root;
}
