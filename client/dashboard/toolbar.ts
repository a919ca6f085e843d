/**
 * The view toolbar: x as step or wall time, linear or log x, the smoothing slider, replicas
 * on demand, reset zoom, the theme (auto, light, dark) and a link to the view. Every control
 * changes the view state.
 */
import { clear, h } from "./dom.ts";
import type { ViewState } from "./state.ts";
import type { ThemeChoice } from "./theme.ts";
import { shareableLink } from "./token.ts";

export interface ToolbarActions {
  /** `rebuildToolbar` false keeps the controls (the slider is being dragged). */
  setState(patch: Partial<ViewState>, rebuildToolbar?: boolean): void;
  setZoom(zoom: [number, number] | null): void;
}

export function renderToolbar(toolbar: HTMLElement, s: ViewState, actions: ToolbarActions): void {
  clear(toolbar);
  const seg = (
    name: string,
    options: [string, string][],
    current: string,
    set: (v: string) => void,
  ) =>
    h(
      "div.segmented",
      { "data-control": name },
      ...options.map(([value, label]) =>
        h(`button${value === current ? ".on" : ""}`, {
          "data-value": value,
          onclick: () => set(value),
        }, label)
      ),
    );
  const smoothValue = h("span.smooth-value", {}, s.smoothing.toFixed(2));
  const slider = h("input", {
    type: "range",
    min: "0",
    max: "0.99",
    step: "0.01",
    value: String(s.smoothing),
    name: "smoothing",
    title: "EMA smoothing β (causal, bias-corrected)",
  });
  slider.addEventListener("input", () => {
    smoothValue.textContent = Number(slider.value).toFixed(2);
    actions.setState({ smoothing: Number(slider.value) }, false);
  });
  const share = h("button.chip", { title: "copy a link to this view" }, "Copy link");
  share.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(shareableLink(location.href));
      share.textContent = "Copied";
    } catch {
      share.textContent = "Link is in the address bar";
    }
    setTimeout(() => (share.textContent = "Copy link"), 1500);
  });
  toolbar.append(
    h(
      "div.tool",
      {},
      h("span.tool-label", {}, "x"),
      seg(
        "x",
        [["step", "step"], ["wall", "wall time"]],
        s.x,
        (v) => actions.setState({ x: v as ViewState["x"], zoom: null }),
      ),
    ),
    h(
      "div.tool",
      {},
      h("span.tool-label", {}, "x scale"),
      seg(
        "xscale",
        [["lin", "linear"], ["log", "log"]],
        s.xlog ? "log" : "lin",
        (v) => actions.setState({ xlog: v === "log", zoom: null }),
      ),
    ),
    h("div.tool", {}, h("span.tool-label", {}, "smoothing"), slider, smoothValue),
    h(
      "label.tool.check",
      {},
      h("input", {
        type: "checkbox",
        name: "show-replicas",
        checked: s.replicas,
        onchange: (e: Event) =>
          actions.setState({ replicas: (e.target as HTMLInputElement).checked }),
      }),
      "replicas",
    ),
    s.zoom
      ? h(
        "button.chip",
        { onclick: () => actions.setZoom(null), "data-action": "reset-zoom" },
        "Reset zoom",
      )
      : "",
    h("div.spacer"),
    h(
      "div.tool",
      { title: "colour theme; auto follows the system's setting" },
      h("span.tool-label", {}, "theme"),
      seg(
        "theme",
        [["auto", "auto"], ["light", "light"], ["dark", "dark"]],
        s.theme,
        (v) => actions.setState({ theme: v as ThemeChoice }),
      ),
    ),
    share,
  );
}
