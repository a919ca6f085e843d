/**
 * The runs list: status, progress (steps/s and ETA while running), backend and spec per
 * run, grouped by experiment (latest first) and filtered by experiment, status and text
 * (name, tags, note, algorithm, id); a checkbox chooses which runs the charts show; name,
 * tags and note are editable in place; stop, resume (interrupted or failed runs) and delete
 * (delete asks for a second click).
 */
import type { RunSpec } from "../../server/experiments/types.ts";
import type { RunStatus } from "../../server/runs/records.ts";
import type { ExperimentInfo } from "./api.ts";
import { clear, fmtDuration, fmtSteps, h } from "./dom.ts";
import { parseTags } from "./form.ts";

export interface RunRow {
  id: string;
  label: string;
  colour: string;
  status: RunStatus;
  step: number;
  steps: number;
  backend: string;
  adapter: string;
  spec: RunSpec | null;
  error?: string;
  /** Damaged records in the run's log, skipped on reading (docs/storage.md). */
  damaged?: number;
  shown: boolean;
  experiment: string;
  created: string;
  name?: string;
  tags?: string[];
  note?: string;
  /** Steps per second of compute lately, when the run is running and it is known. */
  rate?: number | null;
}

/** Statuses POST /api/runs/:id/resume accepts. */
const RESUMABLE = ["interrupted", "failed"];

export interface RunsListActions {
  toggle(id: string, shown: boolean): void;
  stop(id: string): void;
  /** Continues an interrupted or failed run from its checkpoint. */
  resume(id: string): void;
  remove(id: string): void;
  showOnly(id: string): void;
  /** Saves a run's name, tags and note (PATCH /api/runs/:id). */
  annotate(id: string, fields: { name?: string; tags?: string[]; note?: string }): Promise<void>;
}

export interface RunsFilter {
  experiment: string;
  status: string;
  text: string;
}

/** Whether a run passes the filter (text: every word must appear in the run's text). */
export function matchesFilter(run: RunRow, f: RunsFilter): boolean {
  if (f.experiment && run.experiment !== f.experiment) return false;
  if (f.status && run.status !== f.status) return false;
  const words = f.text.toLowerCase().split(/\s+/).filter((w) => w);
  if (!words.length) return true;
  const hay = [
    run.label,
    run.name ?? "",
    ...(run.tags ?? []),
    run.note ?? "",
    run.id,
    run.experiment,
    String(run.spec?.params?.algo ?? ""),
  ].join(" ").toLowerCase();
  return words.every((w) => hay.includes(w));
}

/** Runs grouped by experiment, the group with the latest run first; runs by creation within. */
export function groupByExperiment(runs: RunRow[]): { experiment: string; runs: RunRow[] }[] {
  const groups = new Map<string, RunRow[]>();
  for (const r of runs) {
    if (!groups.has(r.experiment)) groups.set(r.experiment, []);
    groups.get(r.experiment)!.push(r);
  }
  const latest = (rs: RunRow[]) => rs.reduce((m, r) => (r.created > m ? r.created : m), "");
  return [...groups].map(([experiment, rs]) => ({ experiment, runs: rs }))
    .sort((
      a,
      b,
    ) => (latest(a.runs) > latest(b.runs) ? -1 : latest(a.runs) < latest(b.runs) ? 1 : 0));
}

/** "1.2k steps/s · ETA 35 s" for a running run. */
export function rateText(rate: number | null | undefined, step: number, steps: number): string {
  if (!rate || !(rate > 0) || !Number.isFinite(rate)) return "";
  const left = Math.max(0, steps - step) / rate;
  return `${fmtRate(rate)} steps/s · ETA ${fmtDuration(left * 1000)}`;
}

function fmtRate(r: number): string {
  return r >= 1e3 ? fmtSteps(Math.round(r)) : String(Number(r.toPrecision(3)));
}

/** Parameters that differ from the experiment's defaults, e.g. "algo gd · lr 0.05". */
export function specSummary(spec: RunSpec | null, exp: ExperimentInfo | undefined): string {
  if (!spec) return "";
  const parts: string[] = [];
  for (const [name, value] of Object.entries(spec.params)) {
    const def = exp?.params[name];
    // A default may depend on another parameter (the label-noise LR schedule on algo).
    const byParam = def?.kind === "schedule" && def.defaultBy
      ? def.defaultBy.values[String(spec.params[def.defaultBy.param])]
      : undefined;
    if (def && JSON.stringify(byParam ?? def.default) === JSON.stringify(value)) continue;
    if (def?.kind === "schedule") {
      parts.push((value as unknown[]).length ? `${name} ${JSON.stringify(value)}` : `${name} none`);
    } else parts.push(`${name} ${Array.isArray(value) ? value.join("/") : value}`);
  }
  parts.push(`R ${spec.replicas}`, `every ${fmtSteps(spec.every)}`);
  return parts.join(" · ");
}

const ACTIVE: RunStatus[] = ["queued", "running"];
const STATUSES: RunStatus[] = ["queued", "running", "finished", "failed", "stopped", "interrupted"];

export class RunsList {
  readonly el = h("div.runs-list");
  filter: RunsFilter = { experiment: "", status: "", text: "" };
  private rows = new Map<string, { el: HTMLElement; key: string; step: number }>();
  private groupHeads = new Map<string, HTMLElement>();
  private lastRuns: RunRow[] = [];
  private editing: string | null = null;
  private list = h("div.runs-groups");
  private expSelect = h("select", { name: "filter-experiment", title: "experiment" });
  private statusSelect = h(
    "select",
    { name: "filter-status", title: "status" },
    h("option", { value: "" }, "any status"),
    ...STATUSES.map((st) => h("option", { value: st }, st)),
  );
  private search = h("input", {
    type: "search",
    name: "filter-text",
    placeholder: "search name, tag, note, algo…",
    spellcheck: "false",
  });
  private counts = h("span.runs-count");
  private empty = h(
    "div.runs-empty",
    {},
    "No runs yet. Start a preset below, or a run of your own.",
  );

  constructor(
    private readonly actions: RunsListActions,
    private readonly experiment: (id: string) => ExperimentInfo | undefined,
  ) {
    const refilter = () => {
      this.filter = {
        experiment: this.expSelect.value,
        status: this.statusSelect.value,
        text: this.search.value,
      };
      this.update(this.lastRuns);
    };
    this.expSelect.addEventListener("change", refilter);
    this.statusSelect.addEventListener("change", refilter);
    this.search.addEventListener("input", refilter);
    this.el.append(
      h("div.runs-filter", {}, this.search, this.expSelect, this.statusSelect, this.counts),
      this.empty,
      this.list,
    );
  }

  update(runs: RunRow[]): void {
    this.lastRuns = runs;
    this.empty.hidden = runs.length > 0;
    const experiments = [...new Set(runs.map((r) => r.experiment))].sort();
    const optionsKey = JSON.stringify(experiments);
    if (this.expSelect.dataset.key !== optionsKey) {
      this.expSelect.dataset.key = optionsKey;
      const chosen = this.expSelect.value;
      clear(this.expSelect);
      this.expSelect.append(
        h("option", { value: "" }, "all experiments"),
        ...experiments.map((e) => h("option", { value: e }, e)),
      );
      this.expSelect.value = experiments.includes(chosen) ? chosen : "";
    }
    const shown = runs.filter((r) => matchesFilter(r, this.filter));
    this.counts.textContent = shown.length === runs.length
      ? ""
      : `${shown.length} of ${runs.length}`;
    const keep = new Set(shown.map((r) => r.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    const groups = groupByExperiment(shown);
    const heads = new Set(groups.map((g) => g.experiment));
    for (const [exp, el] of this.groupHeads) {
      if (!heads.has(exp)) {
        el.remove();
        this.groupHeads.delete(exp);
      }
    }
    let index = 0;
    const place = (el: HTMLElement) => {
      const at = this.list.children[index] ?? null;
      if (at !== el) this.list.insertBefore(el, at);
      index++;
    };
    for (const group of groups) {
      let head = this.groupHeads.get(group.experiment);
      if (!head) {
        head = h("div.runs-group-head", { "data-experiment": group.experiment });
        this.groupHeads.set(group.experiment, head);
      }
      head.textContent = `${group.experiment} · ${group.runs.length}`;
      place(head);
      for (const run of group.runs) {
        let row = this.rows.get(run.id);
        if (!row) {
          row = { el: h("div.run-row", { "data-run": run.id }), key: "", step: -1 };
          this.rows.set(run.id, row);
        }
        place(row.el);
        this.updateRow(row, run);
      }
    }
  }

  private updateRow(row: { el: HTMLElement; key: string; step: number }, run: RunRow): void {
    const key = JSON.stringify([
      run.label,
      run.colour,
      run.status,
      run.steps,
      run.backend,
      run.shown,
      run.error,
      run.damaged,
      run.spec !== null,
      run.name,
      run.tags,
      run.note,
    ]);
    // A row being edited keeps its inputs until saved or cancelled.
    if (row.key !== key && this.editing !== run.id) {
      row.key = key;
      row.step = -1;
      this.render(row.el, run);
    }
    if (row.step !== run.step || ACTIVE.includes(run.status)) {
      // Progress changes with every snapshot: update a few nodes, not the row.
      row.step = run.step;
      const progress = run.steps > 0 ? Math.min(1, run.step / run.steps) : 0;
      const fill = row.el.querySelector<HTMLElement>(".fill");
      if (!fill) return;
      fill.style.width = `${(progress * 100).toFixed(1)}%`;
      row.el.querySelector<HTMLElement>(".steps")!.textContent = `${fmtSteps(run.step)} / ${
        fmtSteps(run.steps)
      }`;
      row.el.querySelector<HTMLElement>(".run-progress")!.title =
        `${run.step} / ${run.steps} steps`;
      const eta = row.el.querySelector<HTMLElement>(".run-rate")!;
      const text = run.status === "running" ? rateText(run.rate, run.step, run.steps) : "";
      if (eta.textContent !== text) eta.textContent = text;
    }
  }

  private render(el: HTMLElement, run: RunRow): void {
    clear(el);
    el.classList.toggle("hidden-run", !run.shown);
    const progress = run.steps > 0 ? Math.min(1, run.step / run.steps) : 0;
    const exp = run.spec ? this.experiment(run.spec.experiment) : undefined;
    const summary = specSummary(run.spec, exp);
    const checkbox = h("input", {
      type: "checkbox",
      checked: run.shown,
      title: "show in charts",
      onchange: (e: Event) => this.actions.toggle(run.id, (e.target as HTMLInputElement).checked),
    });
    const del = h("button.icon.danger", {
      title: "delete run and its log",
      "data-action": "delete",
    }, "✕");
    del.addEventListener("click", () => {
      if (del.dataset.armed) return this.actions.remove(run.id);
      del.dataset.armed = "1";
      del.textContent = "delete?";
      setTimeout(() => {
        delete del.dataset.armed;
        del.textContent = "✕";
      }, 3000);
    });
    const edit = h("button.icon", {
      title: "edit name, tags and note",
      "data-action": "edit",
      onclick: () => this.openEditor(el, run),
    }, "✎");
    el.append(
      h(
        "div.run-line",
        {},
        checkbox,
        h("i.swatch", { style: `background:${run.colour}` }),
        h("span.run-label", {
          title: "show only this run",
          onclick: () => this.actions.showOnly(run.id),
        }, run.label),
        h(`span.badge.status-${run.status}`, { "data-role": "status" }, run.status),
        run.damaged
          ? h("span.badge.damaged", {
            "data-role": "damaged",
            title: "records of this run's log failed their checksum and were skipped; " +
              "everything else is intact (GET /api/runs lists where)",
          }, `${run.damaged} damaged`)
          : null,
        edit,
        ACTIVE.includes(run.status)
          ? h("button.icon", {
            title: "stop",
            "data-action": "stop",
            onclick: () => this.actions.stop(run.id),
          }, "■")
          : RESUMABLE.includes(run.status)
          ? h("button.icon", {
            title: "resume from the last checkpoint",
            "data-action": "resume",
            onclick: () => this.actions.resume(run.id),
          }, "▶")
          : null,
        del,
      ),
      run.tags?.length ? h("div.run-tags", {}, ...run.tags.map((t) => h("span.tag", {}, t))) : "",
      run.note ? h("div.run-note", {}, run.note) : "",
      h(
        "div.run-progress",
        { title: `${run.step} / ${run.steps} steps` },
        h(
          "div.bar",
          {},
          h("div.fill", {
            style: `width:${(progress * 100).toFixed(1)}%;background:${run.colour}`,
          }),
        ),
        h("span.steps", {}, `${fmtSteps(run.step)} / ${fmtSteps(run.steps)}`),
      ),
      h("div.run-rate"),
      h(
        "div.run-meta",
        { title: run.spec ? JSON.stringify(run.spec, null, 1) : "" },
        h("span.backend", { title: run.adapter }, run.backend || "…"),
        h("span.spec", {}, summary),
      ),
      run.error ? h("div.run-error", {}, run.error) : "",
      h("div.run-id", {}, run.id),
    );
  }

  /** Name, tags and note in place; saved with PATCH /api/runs/:id. */
  private openEditor(el: HTMLElement, run: RunRow): void {
    if (el.querySelector(".run-editor")) return;
    this.editing = run.id;
    const name = h("input", { type: "text", name: "run-name", value: run.name ?? "" });
    const tags = h("input", {
      type: "text",
      name: "run-tags",
      value: (run.tags ?? []).join(", "),
      spellcheck: "false",
    });
    const note = h("input", { type: "text", name: "run-note", value: run.note ?? "" });
    const status = h("span.form-status");
    const close = () => {
      this.editing = null;
      editor.remove();
      const row = this.rows.get(run.id);
      if (row) row.key = "";
      this.update(this.lastRuns);
    };
    const save = h("button.primary", {
      type: "submit",
      "data-action": "save",
    }, "Save");
    const editor = h(
      "form.run-editor",
      {},
      h("label", {}, "name ", name),
      h("label", {}, "tags ", tags),
      h("label", {}, "note ", note),
      h(
        "div.form-actions",
        {},
        save,
        h("button", { type: "button", onclick: close }, "Cancel"),
        status,
      ),
    );
    editor.addEventListener("submit", async (e) => {
      e.preventDefault();
      save.disabled = true;
      try {
        await this.actions.annotate(run.id, {
          name: name.value.trim(),
          tags: parseTags(tags.value),
          note: note.value.trim(),
        });
        close();
      } catch (err) {
        status.className = "form-status bad";
        status.textContent = err instanceof Error ? err.message : String(err);
        save.disabled = false;
      }
    });
    el.append(editor);
    name.focus();
  }
}
