/**
 * The runs list: status, progress, backend and spec per run; a checkbox chooses which runs
 * the charts show; stop and delete (delete asks for a second click).
 */
import type { RunSpec } from "../../server/experiments/types.ts";
import type { RunStatus } from "../../server/runs/records.ts";
import type { ExperimentInfo } from "./api.ts";
import { clear, fmtSteps, h } from "./dom.ts";

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
}

export interface RunsListActions {
  toggle(id: string, shown: boolean): void;
  stop(id: string): void;
  remove(id: string): void;
  showOnly(id: string): void;
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

export class RunsList {
  readonly el = h("div.runs-list");
  private rows = new Map<string, { el: HTMLElement; key: string; step: number }>();
  private empty = h(
    "div.runs-empty",
    {},
    "No runs yet. Start a preset below, or a run of your own.",
  );

  constructor(
    private readonly actions: RunsListActions,
    private readonly experiment: (id: string) => ExperimentInfo | undefined,
  ) {
    this.el.append(this.empty);
  }

  update(runs: RunRow[]): void {
    this.empty.hidden = runs.length > 0;
    const keep = new Set(runs.map((r) => r.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    runs.forEach((run, index) => {
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
      ]);
      let row = this.rows.get(run.id);
      if (!row) {
        row = { el: h("div.run-row", { "data-run": run.id }), key: "", step: -1 };
        this.rows.set(run.id, row);
      }
      const at = this.el.children[index + 1] ?? null; // after the "no runs" note
      if (at !== row.el) this.el.insertBefore(row.el, at);
      if (row.key !== key) {
        row.key = key;
        row.step = -1;
        this.render(row.el, run);
      }
      if (row.step !== run.step) {
        // Progress changes with every snapshot: update two nodes, not the row.
        row.step = run.step;
        const progress = run.steps > 0 ? Math.min(1, run.step / run.steps) : 0;
        const fill = row.el.querySelector<HTMLElement>(".fill")!;
        fill.style.width = `${(progress * 100).toFixed(1)}%`;
        row.el.querySelector<HTMLElement>(".steps")!.textContent = `${fmtSteps(run.step)} / ${
          fmtSteps(run.steps)
        }`;
        row.el.querySelector<HTMLElement>(".run-progress")!.title =
          `${run.step} / ${run.steps} steps`;
      }
    });
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
        ACTIVE.includes(run.status)
          ? h("button.icon", {
            title: "stop",
            "data-action": "stop",
            onclick: () => this.actions.stop(run.id),
          }, "■")
          : null,
        del,
      ),
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
}
