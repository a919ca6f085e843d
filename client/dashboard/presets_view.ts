/** The presets card: a paper's comparison in one click, grouped by experiment. */
import type { ExperimentInfo, Health } from "./api.ts";
import { h } from "./dom.ts";
import { type Preset, type PresetOverrides, presets } from "./presets.ts";

export interface PresetsViewOptions {
  experiments: ReadonlyMap<string, ExperimentInfo>;
  health: Health | null;
  /** Starts the preset's runs; resolves to their ids. */
  start(preset: Preset, overrides: PresetOverrides): Promise<string[]>;
}

/**
 * Presets grouped by experiment, one compact row each: the figure's name and a Start
 * button; "options" opens the description and the run length and backend to use.
 */
export function presetsView(opts: PresetsViewOptions): HTMLElement {
  const list = h("div.presets");
  const backendNames = [
    "auto",
    ...Object.keys(opts.health?.backends ?? {}).filter((b) => opts.health!.backends[b].available),
  ];
  let group = "";
  for (const p of presets()) {
    if (opts.experiments.size && !opts.experiments.has(p.experiment)) continue;
    if (p.experiment !== group) {
      group = p.experiment;
      list.append(h("div.preset-group", {}, group));
    }
    const steps = h("input", {
      type: "text",
      inputmode: "numeric",
      value: String(p.steps),
      name: "steps",
      title: "steps per run",
    });
    const backend = h(
      "select",
      { name: "backend", title: "backend" },
      ...backendNames.map((b) => h("option", { value: b }, b)),
    );
    const status = h("div.preset-status");
    const button = h("button.primary", { "data-preset": p.id }, "Start");
    button.addEventListener("click", async () => {
      button.disabled = true;
      status.textContent = "starting…";
      try {
        const ids = await opts.start(p, {
          steps: Number(steps.value),
          backend: backend.value,
        });
        status.textContent = `started ${ids.length} runs`;
      } catch (e) {
        status.textContent = e instanceof Error ? e.message : String(e);
      } finally {
        button.disabled = false;
      }
    });
    const options = h(
      "div.preset-options",
      { hidden: true },
      h("div.preset-doc", {}, p.description, ` ${p.runs.length} runs × ${p.replicas} replicas.`),
      h(
        "div.preset-controls",
        {},
        h("label", {}, "steps ", steps),
        h("label", {}, "backend ", backend),
      ),
    );
    const toggle = h("button.icon.preset-toggle", {
      title: "description and options",
      "data-action": "options",
    }, "options ▸");
    toggle.addEventListener("click", () => {
      options.hidden = !options.hidden;
      toggle.textContent = options.hidden ? "options ▸" : "options ▾";
    });
    list.append(h(
      "div.preset",
      { "data-preset": p.id, title: p.description },
      h("div.preset-row", {}, h("div.preset-title", {}, p.title), button),
      h("div.preset-meta", {}, `${p.runs.length} runs × ${p.replicas} replicas · `, toggle),
      options,
      status,
    ));
  }
  return list;
}
