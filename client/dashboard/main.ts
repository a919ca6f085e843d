/**
 * The lab's dashboard: runs list, presets and the new-run form on the left; one chart per
 * metric and the experiments' panels on the right; everything live from one WebSocket
 * subscription. Incoming records append to typed-array columns and mark the view dirty;
 * drawing happens in animation frames, streamed data at most at the rate the tab can afford
 * (see schedule()). The theme (light, dark, or the system's) is part of the view state; run
 * colours are slots in the theme's palette, so they change with it.
 */
import { workersView } from "./workers_view.ts";
import type { RunEvent, RunSpec } from "../../server/experiments/types.ts";
import type { FrameRecord, RunStatus } from "../../server/runs/records.ts";
import { api, type ExperimentInfo, type Health, type RunSummary } from "./api.ts";
import { type ChartRun, MetricChart } from "./charts.ts";
import { clear, fmt, fmtSteps, h } from "./dom.ts";
import { runForm } from "./form.ts";
import { panelFor, type PanelInstance } from "./panels/registry.ts";
import "./panels/shape_matters.ts";
import "./panels/linear_label_noise.ts";
import "./panels/pegr.ts";
import { type Preset, presetSpecs } from "./presets.ts";
import { presetsView } from "./presets_view.ts";
import { renderToolbar } from "./toolbar.ts";
import "./presets_pegr.ts";
import "./presets_linear_label_noise.ts";
import "./presets_pq.ts";
import { RunsList } from "./runs_list.ts";
import { SweepView } from "./sweep_view.ts";
import { sweepParams, type SweepSource } from "./sweep_data.ts";
import { RunSeries, type SeriesLayout } from "./series.ts";
import { type RunSettings, runSettings, settingStyles, type SweepInfo } from "./settings.ts";
import { defaultState, stateFromQuery, stateToQuery, type ViewState } from "./state.ts";
import { type HelloMessage, LabStream, type RecordMessage } from "./stream.ts";
import { applyTheme, type Palette, PALETTES, resolveTheme, runColour } from "./theme.ts";
import { adoptTokenFromAddress } from "./token.ts";

/** Frames kept per run and name for animated panels (a frame is m·R·3 floats at most). */
const MAX_FRAME_HISTORY = 512;

interface RunEntry {
  id: string;
  experiment: string;
  spec: RunSpec | null;
  metrics: string[];
  status: RunStatus;
  step: number;
  steps: number;
  backend: string;
  adapter: string;
  created: string;
  error?: string;
  /** Damaged records in the run's log (skipped when it was read). */
  damaged?: number;
  label: string;
  /** Set at start or afterwards (annotation records; docs/protocol.md). */
  name?: string;
  tags?: string[];
  note?: string;
  /** Sweep settings (replica groups drawn as one line each), or null for a plain run. */
  settings: RunSettings | null;
  /** Colour slot in the theme's palette (see colour()). */
  slot: number;
  series: RunSeries | null;
  window: RunSeries | null;
  events: RunEvent[];
  frames: Map<string, FrameRecord>;
  /** Every frame received, by name, for panels that animate a run (bounded per name). */
  frameHistory: Map<string, FrameRecord[]>;
}

/** "gd", "label-noise", …: the algorithm names a run best; otherwise the experiment. */
function runLabel(spec: RunSpec | null, id: string): string {
  const algo = spec?.params?.algo;
  const tail = id.slice(-4);
  if (spec?.name) return `${spec.name} · ${tail}`;
  return typeof algo === "string" ? `${algo} · ${tail}` : `${spec?.experiment ?? "run"} · ${tail}`;
}

class Dashboard {
  state: ViewState = stateFromQuery(location.search);
  experiments = new Map<string, ExperimentInfo>();
  health: Health | null = null;
  runs = new Map<string, RunEntry>();
  charts = new Map<string, MetricChart>();
  panels = new Map<string, { section: HTMLElement; instance: PanelInstance }>();
  stream: LabStream;
  private colourNext = 0;
  /** The system's colour scheme, for the "auto" theme (kept up to date by a listener). */
  private systemQuery = globalThis.matchMedia?.("(prefers-color-scheme: dark)");
  private systemDark = this.systemQuery?.matches ?? false;
  private frameRequested = false;
  private dirtyRuns = true;
  private dirtyCharts = true;
  private dirtyPanels = true;
  private historyTimer: ReturnType<typeof setTimeout> | undefined;
  private zoomGeneration = 0;
  stats = { renders: 0, historyRequests: 0, historyAnswers: 0, records: 0, refills: 0 };
  private refilling = new Set<string>();
  /** Server time of snapshots received since the last frame, and recent record→screen delays. */
  private unseenSnapshotTimes: number[] = [];
  latencies: number[] = [];
  /** Milliseconds each coalesced redraw took (recent). */
  renderMs: number[] = [];

  private runsList: RunsList;
  private sweepView = new SweepView({
    setSweep: (patch) => this.setState({ sweep: { ...this.state.sweep, ...patch } }),
  });
  /** The step under the time charts' cursor (null when the cursor is away). */
  private cursorStep: number | null = null;
  private chartsGrid = h("div.charts-grid");
  private panelsHost = h("div.panels");
  private metricChips = h("div.metric-chips");
  private toolbar = h("div.toolbar");
  private connDot = h("span.conn", { title: "connecting" });
  private emptyMain = h(
    "div.empty-main",
    {},
    h("h2", {}, "Nothing to plot yet"),
    h("p", {}, "Start a preset on the left to reproduce a paper's figure, or pick runs to show."),
  );

  constructor() {
    applyTheme(this.palette.name);
    this.systemQuery?.addEventListener("change", (e) => {
      this.systemDark = e.matches;
      if (this.state.theme === "auto") this.themeChanged();
    });
    this.stream = new LabStream({
      hello: (m) => this.onHello(m),
      record: (r) => this.onRecord(r),
      removed: (id) => this.dropRun(id),
      skipped: (id) => this.refill(id),
      connection: (up) => {
        this.connDot.classList.toggle("up", up);
        this.connDot.title = up ? "live" : "reconnecting…";
        this.connDot.textContent = up ? "live" : "reconnecting";
        if (up) this.refreshRuns();
      },
    });
    this.runsList = new RunsList({
      toggle: (id, shown) => this.toggleRun(id, shown),
      stop: (id) => api.stop(id).then(() => this.refreshRuns()).catch((e) => alertError(e)),
      resume: (id) => api.resume(id).then(() => this.refreshRuns()).catch((e) => alertError(e)),
      remove: (id) => this.removeRun(id),
      showOnly: (id) => this.setState({ runs: [id] }),
      annotate: async (id, fields) => {
        await api.annotate(id, fields);
        await this.refreshRuns();
      },
    }, (id) => this.experiments.get(id));
  }

  async start(): Promise<void> {
    const [experiments, health] = await Promise.all([
      api.experiments().catch(() => [] as ExperimentInfo[]),
      api.health().catch(() => null),
    ]);
    for (const e of experiments) this.experiments.set(e.id, e);
    this.health = health;
    this.layout();
    this.acceptDroppedLogs();
    await this.refreshRuns();
    this.stream.connect();
    setInterval(() => this.refreshRuns(), 3000);
    addEventListener("popstate", () => {
      this.state = stateFromQuery(location.search);
      applyTheme(this.palette.name);
      this.buildToolbar();
      this.invalidateAll();
    });
  }

  // ----- layout --------------------------------------------------------------------------

  /** A run log dropped on the page is uploaded (POST /api/runs/import) and shown. */
  private acceptDroppedLogs(): void {
    document.addEventListener("dragover", (e: DragEvent) => {
      if (e.dataTransfer?.types.includes("Files")) {
        e.preventDefault();
        document.body.classList.add("dropping");
      }
    });
    document.addEventListener("dragleave", () => document.body.classList.remove("dropping"));
    document.addEventListener("drop", async (e: DragEvent) => {
      const files = [...(e.dataTransfer?.files ?? [])];
      if (!files.length) return;
      e.preventDefault();
      document.body.classList.remove("dropping");
      for (const file of files) {
        try {
          const { id } = await api.importLog(file);
          this.addRunsToView([id]);
          toast(`imported ${file.name} as ${id}`);
        } catch (err) {
          alertError(new Error(`${file.name}: ${err instanceof Error ? err.message : err}`));
        }
      }
      await this.refreshRuns();
    });
  }

  private layout(): void {
    const root = document.getElementById("app")!;
    clear(root);
    const version = this.health?.version ? `v${this.health.version}` : "";
    const backends = Object.entries(this.health?.backends ?? {})
      .map(([name, b]) =>
        h(
          `span.backend-chip${b.available ? ".ok" : ""}`,
          { title: b.adapter ?? b.reason ?? "" },
          name,
        )
      );
    const header = h(
      "header.topbar",
      {},
      h(
        "div.brand",
        {},
        h("span.logo", {}, "∇"),
        h("span", {}, "the lab"),
        h("span.version", {}, version),
      ),
      h("div.topbar-right", {}, ...backends, this.connDot),
    );
    const presetsCard = h("section.card", {}, h("h3", {}, "Presets"), this.presetsView());
    const runsCard = h("section.card", {}, h("h3", {}, "Runs"), this.runsList.el);
    const formCard = h(
      "details.card.new-run",
      {},
      h("summary", {}, h("h3", {}, "New run")),
      this.experiments.size
        ? runForm({
          experiments: [...this.experiments.values()],
          health: this.health,
          submit: async (spec) => {
            const { id } = await api.start(spec);
            this.addRunsToView([id]);
            await this.refreshRuns();
            return id;
          },
        })
        : h("p.muted", {}, "The server lists no experiments."),
    );
    // A coordinator of several boxes lists its workers (refreshed with the runs).
    const workers = this.health?.nats ? workersView() : undefined;
    if (workers) {
      workers.refresh();
      setInterval(() => workers.refresh(), 3000);
    }
    const aside = h("aside.sidebar", {}, runsCard, workers?.el, presetsCard, formCard);
    this.buildToolbar();
    const main = h(
      "main.main",
      {},
      this.toolbar,
      this.metricChips,
      this.emptyMain,
      this.sweepView.el,
      this.chartsGrid,
      this.panelsHost,
    );
    root.append(header, h("div.layout", {}, aside, main));
  }

  private presetsView(): HTMLElement {
    return presetsView({
      experiments: this.experiments,
      health: this.health,
      start: (p, overrides) => this.startPreset(p, overrides),
    });
  }

  async startPreset(p: Preset, overrides: { steps?: number; backend?: string }): Promise<string[]> {
    const specs = presetSpecs(p, overrides);
    const ids: string[] = [];
    for (const spec of specs) ids.push((await api.start(spec)).id);
    this.setState({
      ...defaultState(),
      ...p.view,
      runs: ids,
      ylog: this.state.ylog,
      theme: this.state.theme,
    });
    await this.refreshRuns();
    return ids;
  }

  private buildToolbar(): void {
    renderToolbar(this.toolbar, this.state, {
      setState: (patch, rebuild) => this.setState(patch, rebuild),
      setZoom: (zoom) => this.setZoom(zoom),
    });
  }

  // ----- state ---------------------------------------------------------------------------

  /** The palette of the theme shown (the choice in the view, or the system's for "auto"). */
  get palette(): Palette {
    return PALETTES[resolveTheme(this.state.theme, this.systemDark)];
  }

  colour(e: RunEntry): string {
    return runColour(e.slot, this.palette);
  }

  /** The theme shown changed: restyle the page; charts and panels redraw in the new palette. */
  private themeChanged(): void {
    applyTheme(this.palette.name);
    this.invalidateAll();
  }

  setState(patch: Partial<ViewState>, rebuildToolbar = true): void {
    const zoomChanged = "zoom" in patch &&
      JSON.stringify(patch.zoom) !== JSON.stringify(this.state.zoom);
    const themeBefore = this.palette.name;
    this.state = { ...this.state, ...patch };
    if (this.palette.name !== themeBefore) applyTheme(this.palette.name);
    const query = stateToQuery(this.state);
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
    if (zoomChanged) this.onZoomChanged();
    if (rebuildToolbar) this.buildToolbar();
    this.invalidateAll();
  }

  setZoom(zoom: [number, number] | null): void {
    this.setState({ zoom });
  }

  private toggleRun(id: string, shown: boolean): void {
    const all = this.shownIds();
    const next = shown ? [...all, id] : all.filter((x) => x !== id);
    this.setState({ runs: [...new Set(next)] });
  }

  private addRunsToView(ids: string[]): void {
    if (this.state.runs !== null) this.setState({ runs: [...this.state.runs, ...ids] });
  }

  private async removeRun(id: string): Promise<void> {
    try {
      await api.remove(id);
    } catch (e) {
      alertError(e);
      return;
    }
    this.dropRun(id);
  }

  private dropRun(id: string): void {
    this.runs.delete(id);
    if (this.state.runs?.includes(id)) {
      this.setState({ runs: this.state.runs.filter((x) => x !== id) });
    }
    this.invalidateAll();
  }

  sweepDebug() {
    return this.sweepView.el.hidden ? null : this.sweepView.debug();
  }

  sweepCsv(): string {
    return this.sweepView.csv();
  }

  sweepPng(): Promise<Blob | null> {
    return this.sweepView.png();
  }

  shownIds(): string[] {
    const all = this.sortedRuns().map((r) => r.id);
    if (this.state.runs === null) return all;
    const known = new Set(all);
    return this.state.runs.filter((id) => known.has(id));
  }

  private sortedRuns(): RunEntry[] {
    return [...this.runs.values()].sort((
      a,
      b,
    ) => (a.created < b.created ? -1 : a.created > b.created ? 1 : a.id < b.id ? -1 : 1));
  }

  // ----- data ----------------------------------------------------------------------------

  private entry(id: string, experiment: string, created: string): RunEntry {
    let e = this.runs.get(id);
    if (!e) {
      e = {
        id,
        experiment,
        spec: null,
        metrics: [],
        status: "queued",
        step: 0,
        steps: 0,
        backend: "",
        adapter: "",
        created,
        label: runLabel(null, id),
        settings: null,
        slot: this.colourNext++,
        series: null,
        window: null,
        events: [],
        frames: new Map(),
        frameHistory: new Map(),
      };
      this.runs.set(id, e);
    }
    return e;
  }

  async refreshRuns(): Promise<void> {
    let list: RunSummary[];
    try {
      list = await api.runs();
    } catch {
      return;
    }
    list.sort((a, b) => (a.created < b.created ? -1 : 1));
    const seen = new Set<string>();
    for (const r of list) {
      seen.add(r.id);
      const e = this.entry(r.id, r.experiment, r.created);
      e.status = r.status;
      e.step = Math.max(e.step, r.step ?? 0);
      e.steps = r.steps ?? e.spec?.steps ?? 0;
      e.backend = r.backend ?? e.backend;
      e.adapter = r.adapter ?? e.adapter;
      e.error = r.error;
      const named = r as { name?: string; tags?: string[]; note?: string };
      e.name = named.name ?? r.spec?.name;
      e.tags = named.tags;
      e.note = named.note;
      e.damaged = r.damaged?.records;
      if (r.spec && !e.spec) {
        e.spec = r.spec;
        e.label = runLabel(r.spec, r.id);
      }
    }
    for (const id of [...this.runs.keys()]) {
      if (!seen.has(id) && this.runs.get(id)!.series === null) this.dropRun(id);
    }
    this.chooseInitialRuns(list);
    this.dirtyRuns = true;
    this.schedule();
  }

  private initialRunsChosen = new URLSearchParams(location.search).has("runs");

  /**
   * A fresh load (no runs in the URL) shows the runs of the experiment run most recently,
   * not every run on the server (unrelated experiments' metrics would share charts).
   */
  private chooseInitialRuns(list: RunSummary[]): void {
    if (this.initialRunsChosen || !list.length) return;
    this.initialRunsChosen = true;
    if (this.state.runs !== null) return;
    const latest = list[list.length - 1].experiment;
    this.setState({ runs: list.filter((r) => r.experiment === latest).map((r) => r.id) });
  }

  private onHello(m: HelloMessage): void {
    const hd = m.header;
    const e = this.entry(m.run, hd.spec.experiment, hd.created);
    e.spec = hd.spec;
    e.label = runLabel(hd.spec, m.run);
    e.metrics = hd.metrics;
    e.steps = hd.spec.steps;
    e.backend = hd.backend;
    e.adapter = hd.adapter;
    e.status = m.status;
    if (!e.series) {
      // The header's sweep field (docs/sweeps.md), else the spec's per-replica lists.
      const sweep = (hd as { sweep?: SweepInfo }).sweep;
      e.settings = runSettings(hd.spec, sweep, this.experiments.get(hd.spec.experiment)?.params);
      e.series = new RunSeries(
        hd.metrics,
        hd.spec.replicas,
        undefined,
        undefined,
        this.seriesLayout(e),
      );
      e.series.setSmoothing(this.state.smoothing);
    }
    this.invalidateAll();
  }

  /** How a run's series groups replicas (its sweep settings) and which metrics it smooths. */
  private seriesLayout(e: RunEntry): SeriesLayout {
    const metrics = this.experiments.get(e.experiment)?.metrics ?? [];
    return {
      groups: e.settings?.settings.map((s) => s.replicas),
      unsmoothed: new Set(metrics.filter((m) => m.smooth === false).map((m) => m.name)),
    };
  }

  private onRecord(r: RecordMessage): void {
    const e = this.runs.get(r.run);
    if (!e) return;
    this.stats.records++;
    switch (r.type) {
      case "snapshot":
        if (e.series?.appendSnapshot(r.step, r.wall_ms, r.metrics)) {
          e.step = Math.max(e.step, r.step);
          this.dirtyCharts = true;
          this.dirtyRuns = true;
          // Panels that read the columns (pegr's phase plane) redraw with the charts.
          if (panelFor(e.experiment)) this.dirtyPanels = true;
          this.unseenSnapshotTimes.push(r.time);
        }
        break;
      case "event":
        e.events.push(r.event);
        this.dirtyCharts = true;
        if (panelFor(e.experiment)) this.dirtyPanels = true;
        break;
      case "frame": {
        e.frames.set(r.name, r);
        // Bounded: past the cap, every other frame after the first is dropped.
        let history = e.frameHistory.get(r.name) ?? [];
        if (history.length >= MAX_FRAME_HISTORY) {
          history = history.filter((_, i) => i === 0 || i % 2 === 1);
        }
        history.push(r);
        e.frameHistory.set(r.name, history);
        this.dirtyPanels = true;
        break;
      }
      case "status":
        e.status = r.status;
        e.step = Math.max(e.step, r.step);
        e.error = r.error;
        this.dirtyRuns = true;
        break;
    }
    this.schedule();
  }

  /**
   * After the server skipped records of a run for this page (it fell behind), re-reads the
   * run's history at the store's resolution and rebuilds its columns, so the chart has no
   * hole; live snapshots keep appending after it.
   */
  private refill(id: string): void {
    const e = this.runs.get(id);
    if (!e || this.refilling.has(id)) return;
    this.refilling.add(id);
    setTimeout(async () => {
      try {
        const old = e.series;
        if (!old) return;
        const answer = await this.stream.history(id, undefined, undefined, old.maxRows);
        if (!answer || this.runs.get(id) !== e || e.series !== old) return;
        const rebuilt = RunSeries.fromHistory(
          e.metrics,
          old.replicas,
          answer,
          (step) => old.wallAt(step),
          old.maxRows,
          old.layout,
        );
        // Snapshots that arrived while the answer was on its way follow it.
        for (let i = old.indexAtOrAfter(rebuilt.lastStep + 1); i < old.n; i++) {
          const metrics: Record<string, Float32Array> = {};
          for (const [name, cols] of old.cols) {
            metrics[name] = cols.last.slice(i * old.replicas, (i + 1) * old.replicas);
          }
          rebuilt.appendSnapshot(old.step[i], old.wall[i], metrics);
        }
        rebuilt.setSmoothing(this.state.smoothing, true);
        e.series = rebuilt;
        this.stats.refills++;
        this.invalidateAll();
      } finally {
        this.refilling.delete(id);
      }
    }, 250);
  }

  // ----- zoom history --------------------------------------------------------------------

  private onZoomChanged(): void {
    this.zoomGeneration++;
    for (const e of this.runs.values()) e.window = null;
    clearTimeout(this.historyTimer);
    if (this.state.zoom) this.historyTimer = setTimeout(() => this.fetchWindows(), 150);
  }

  /** Asks the server for each shown run's zoomed window at about one bucket per pixel. */
  private async fetchWindows(): Promise<void> {
    const zoom = this.state.zoom;
    if (!zoom) return;
    const generation = this.zoomGeneration;
    const width = Math.max(...[...this.charts.values()].map((c) => c.plotWidth), 200);
    const shown = this.shownIds().map((id) => this.runs.get(id)!).filter((e) => e.series);
    await Promise.all(shown.map(async (e) => {
      const s = e.series!;
      const [from, to] = this.state.x === "step"
        ? zoom
        : [stepAtWall(s, zoom[0]), stepAtWall(s, zoom[1])];
      if (!(to >= 0)) return;
      this.stats.historyRequests++;
      const answer = await this.stream.history(
        e.id,
        Math.max(0, Math.floor(from)),
        Math.ceil(to),
        width,
      );
      if (!answer || generation !== this.zoomGeneration) return;
      this.stats.historyAnswers++;
      e.window = RunSeries.fromHistory(
        e.metrics,
        s.replicas,
        answer,
        (step) => s.wallAt(step),
        0,
        s.layout,
      );
      this.dirtyCharts = true;
      this.schedule(true);
    }));
  }

  // ----- drawing -------------------------------------------------------------------------

  private invalidateAll(): void {
    this.dirtyRuns = this.dirtyCharts = this.dirtyPanels = true;
    this.schedule(true);
  }

  /**
   * Asks for a redraw at the next animation frame. Streamed data (not urgent) is drawn at
   * most once per `liveInterval`: about three times the recent redraw cost, so redraws take
   * at most a third of the main thread and the tab stays responsive however fast records
   * arrive; on a fast machine that is every frame. View changes draw at the next frame.
   */
  private schedule(urgent = false): void {
    if (urgent) this.urgent = true;
    if (this.frameRequested) return;
    this.frameRequested = true;
    requestAnimationFrame(() => {
      this.frameRequested = false;
      this.render();
    });
  }

  private urgent = false;
  private lastDrawAt = -Infinity;
  private drawCost = 0;
  private deferTimer: ReturnType<typeof setTimeout> | undefined;

  private get liveInterval(): number {
    return Math.min(100, 3 * this.drawCost);
  }

  private render(): void {
    const t0 = performance.now();
    const wait = this.urgent ? 0 : this.lastDrawAt + this.liveInterval - t0;
    if (wait > 1) {
      this.deferTimer ??= setTimeout(() => {
        this.deferTimer = undefined;
        this.schedule();
      }, wait);
      return;
    }
    this.urgent = false;
    try {
      this.draw();
    } finally {
      const cost = performance.now() - t0;
      this.lastDrawAt = t0;
      this.drawCost = 0.7 * this.drawCost + 0.3 * cost;
      this.renderMs.push(cost);
      if (this.renderMs.length > 4096) this.renderMs.splice(0, this.renderMs.length - 4096);
    }
  }

  private draw(): void {
    this.stats.renders++;
    const shown = new Set(this.shownIds());
    if (this.dirtyRuns) {
      this.dirtyRuns = false;
      this.runsList.update(
        this.sortedRuns().map((e) => ({
          id: e.id,
          label: e.label,
          colour: this.colour(e),
          status: e.status,
          step: e.step,
          steps: e.steps,
          backend: e.backend,
          adapter: e.adapter,
          spec: e.spec,
          error: e.error,
          damaged: e.damaged,
          shown: shown.has(e.id),
          experiment: e.experiment,
          created: e.created,
          name: e.name,
          tags: e.tags,
          note: e.note,
          rate: e.status === "running" ? e.series?.stepsPerSecond() ?? null : null,
        })),
      );
    }
    const visible = [...shown].map((id) => this.runs.get(id)!).filter((e) => e.series);
    if (this.dirtyCharts) {
      this.dirtyCharts = false;
      this.renderCharts(visible);
    }
    if (this.dirtyPanels) {
      this.dirtyPanels = false;
      this.renderPanels(visible);
    }

    // How long after the server stamped a snapshot it reached the screen (same host clock
    // when the browser runs beside the lab; the benchmark reports it).
    const now = Date.now();
    for (const t of this.unseenSnapshotTimes) this.latencies.push(now - t);
    this.unseenSnapshotTimes.length = 0;
    if (this.latencies.length > 4096) this.latencies.splice(0, this.latencies.length - 4096);
  }

  /** Metrics of the shown runs, in the experiments' order, filtered by the view. */
  availableMetrics(visible: RunEntry[]): string[] {
    const all: string[] = [];
    for (const e of visible) for (const m of e.metrics) if (!all.includes(m)) all.push(m);
    return all;
  }

  /** A metric's doc and scale, from the experiments of the shown runs first (names repeat). */
  private metricInfo(metric: string, visible: RunEntry[] = []): { doc: string; log: boolean } {
    const shown = visible.map((r) => this.experiments.get(r.experiment)).filter((e) => e);
    for (const e of [...shown, ...this.experiments.values()]) {
      if (!e) continue;
      const m = e.metrics.find((x) => x.name === metric);
      if (m) return { doc: m.doc, log: m.scale === "log" };
    }
    return { doc: "", log: false };
  }

  /** The runs the charts last drew, so chips and charts read the same metric docs. */
  private shownRuns: RunEntry[] = [];

  private renderCharts(visible: RunEntry[]): void {
    this.shownRuns = visible;
    for (const e of visible) e.series!.setSmoothing(this.state.smoothing);
    const available = this.availableMetrics(visible);
    const wanted = this.state.metrics === null
      ? available
      : this.state.metrics.filter((m) => available.includes(m));
    const chipsKey = JSON.stringify([available, wanted]);
    if (chipsKey !== this.chipsKey) this.renderChips(available, wanted, chipsKey);
    for (const [m, chart] of this.charts) {
      if (!wanted.includes(m)) {
        chart.destroy();
        this.charts.delete(m);
      }
    }
    this.emptyMain.hidden = visible.length > 0;
    wanted.forEach((m, index) => {
      let chart = this.charts.get(m);
      const info = this.metricInfo(m, visible);
      if (chart) chart.describe(info.doc, info.log);
      else {
        chart = new MetricChart(m, info.doc, info.log, {
          setZoom: (z) => this.setZoom(z),
          setYLog: (metric, log) => this.setState({ ylog: { ...this.state.ylog, [metric]: log } }),
          cursorAt: (x) => this.cursorMoved(x),
        });
        this.charts.set(m, chart);
      }
      // Order follows the view; moving an element costs a layout, so only when needed.
      if (this.chartsGrid.children[index] !== chart.el) {
        this.chartsGrid.insertBefore(chart.el, this.chartsGrid.children[index] ?? null);
      }
      const runs: ChartRun[] = visible.filter((e) => e.metrics.includes(m)).map((e) => ({
        id: e.id,
        label: e.label,
        colour: this.colour(e),
        lines: this.settingLines(e),
        series: e.series!,
        window: e.window,
        events: e.events,
      }));
      chart.update(runs, this.state, this.palette);
    });
    this.charts = new Map(wanted.map((m) => [m, this.charts.get(m)!]));
    this.renderSweep(visible, available);
  }

  /** The time charts' cursor moved: the sweep view follows it when it shows "at cursor". */
  private cursorMoved(x: number | null): void {
    const step = this.state.x === "step" ? x : null;
    if (step === this.cursorStep) return;
    this.cursorStep = step;
    if (this.state.sweep.at === "cursor") {
      this.renderSweep(this.shownRuns, this.availableMetrics(this.shownRuns));
    }
  }

  /** The sweep view, shown when the runs shown vary in a swept parameter or algorithm. */
  private renderSweep(visible: RunEntry[], metrics: string[]): void {
    const sources: SweepSource[] = visible.map((e) => ({
      run: e.id,
      label: e.label,
      algo: typeof e.spec?.params?.algo === "string" ? e.spec.params.algo : undefined,
      settings: e.settings,
      series: e.series!,
    }));
    const scales: Record<string, "log" | "linear"> = {};
    for (const e of visible) Object.assign(scales, e.settings?.scale ?? {});
    const params = sweepParams(sources);
    this.sweepView.el.hidden = params.length === 0;
    if (!params.length) return;
    this.sweepView.update(
      {
        sources,
        metrics,
        logMetric: (m) => this.state.ylog[m] ?? this.metricInfo(m, visible).log,
        scales,
        cursorStep: this.cursorStep,
      },
      this.state.sweep,
      this.palette,
    );
  }

  /** A sweep run's lines: one per setting, on the theme's sequential scale. */
  private settingLines(e: RunEntry) {
    if (!e.settings) return undefined;
    const styles = settingStyles(e.settings, this.palette);
    return e.settings.settings.map((s, i) => ({ label: s.label, ...styles[i] }));
  }

  private chipsKey = "";

  private renderChips(available: string[], wanted: string[], key: string): void {
    this.chipsKey = key;
    clear(this.metricChips);
    if (available.length) {
      this.metricChips.append(h("span.tool-label", {}, "metrics"));
      for (const m of available) {
        const on = wanted.includes(m);
        this.metricChips.append(h(`button.chip${on ? ".on" : ""}`, {
          "data-metric": m,
          title: this.metricInfo(m, this.shownRuns).doc,
          onclick: () => {
            const next = on ? wanted.filter((x) => x !== m) : [...wanted, m];
            this.setState({ metrics: next });
          },
        }, m));
      }
    }
  }

  private renderPanels(visible: RunEntry[]): void {
    const byExperiment = new Map<string, RunEntry[]>();
    for (const e of visible) {
      if (!panelFor(e.experiment)) continue;
      if (!byExperiment.has(e.experiment)) byExperiment.set(e.experiment, []);
      byExperiment.get(e.experiment)!.push(e);
    }
    for (const [exp, p] of this.panels) {
      if (!byExperiment.has(exp)) {
        p.instance.destroy();
        p.section.remove();
        this.panels.delete(exp);
      }
    }
    for (const [exp, entries] of byExperiment) {
      let p = this.panels.get(exp);
      const def = panelFor(exp)!;
      if (!p) {
        const body = h("div.panel-body");
        const section = h(
          "section.panel-card",
          { "data-panel": exp },
          h(
            "header.chart-head",
            {},
            h(
              "div.chart-title",
              {},
              h("span.metric-name", {}, def.title),
              h("span.metric-doc", {}, exp),
            ),
          ),
          body,
        );
        this.panelsHost.append(section);
        p = { section, instance: def.create(body) };
        this.panels.set(exp, p);
      }
      p.instance.update(
        entries.map((e) => ({
          id: e.id,
          label: e.label,
          colour: this.colour(e),
          spec: e.spec!,
          frames: e.frames,
          frameHistory: e.frameHistory,
          series: e.series ?? undefined,
          events: e.events,
        })),
        this.palette,
      );
    }
  }
}

/** The step at which a run's wall clock reached `ms` (interpolated). */
function stepAtWall(s: RunSeries, ms: number): number {
  if (s.n === 0) return NaN;
  let lo = 0, hi = s.n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (s.wall[mid] < ms) lo = mid + 1;
    else hi = mid;
  }
  if (lo === 0) return s.step[0];
  if (lo >= s.n) return s.step[s.n - 1];
  const w0 = s.wall[lo - 1], w1 = s.wall[lo];
  return s.step[lo - 1] + (s.step[lo] - s.step[lo - 1]) * ((ms - w0) / (w1 - w0 || 1));
}

function alertError(e: unknown): void {
  console.error(e);
  toast(e instanceof Error ? e.message : String(e));
}

function toast(msg: string): void {
  const el = h("div.toast", {}, msg);
  document.body.append(el);
  setTimeout(() => el.remove(), 4000);
}

// Before the view reads the address: the token leaves it for sessionStorage.
adoptTokenFromAddress();
const app = new Dashboard();

/** Read-only hook for tests and the benchmark: plain data, never live objects. */
const debugHook = {
  state: () => structuredClone(app.state),
  runs: () =>
    app.shownIds().length >= 0
      ? [...app.runs.values()].map((e) => ({
        id: e.id,
        label: e.label,
        colour: app.colour(e),
        status: e.status,
        step: e.step,
        steps: e.steps,
        backend: e.backend,
        rows: e.series?.n ?? 0,
        events: e.events.length,
        shown: app.shownIds().includes(e.id),
      }))
      : [],
  charts: () => [...app.charts.keys()],
  chart: (metric: string) => app.charts.get(metric)?.debug() ?? null,
  chartCsv: (metric: string) => app.charts.get(metric)?.csv() ?? null,
  /** The chart's PNG export, decoded: its size and the colour of its top-left pixel. */
  chartPng: async (metric: string) => {
    const blob = await app.charts.get(metric)?.png();
    if (!blob) return null;
    const image = await createImageBitmap(blob);
    const canvas = new OffscreenCanvas(image.width, image.height);
    const ctx = canvas.getContext("2d")!;
    ctx.drawImage(image, 0, 0);
    return {
      width: image.width,
      height: image.height,
      corner: [...ctx.getImageData(1, 1, 1, 1).data],
    };
  },
  /** The theme chosen and the one shown. */
  theme: () => ({ choice: app.state.theme, shown: app.palette.name }),
  /** Every stored row of a run: step, wall_ms and per metric the replicas' values. */
  streamed: (id: string) => {
    const s = app.runs.get(id)?.series;
    if (!s) return null;
    const metrics: Record<string, number[][]> = {};
    for (const [name, cols] of s.cols) {
      metrics[name] = Array.from(
        { length: s.n },
        (_, i) => Array.from(cols.last.subarray(i * s.replicas, (i + 1) * s.replicas)),
      );
    }
    return {
      steps: Array.from(s.step.subarray(0, s.n)),
      wall_ms: Array.from(s.wall.subarray(0, s.n)),
      metrics,
    };
  },
  panel: (experiment: string) => app.panels.get(experiment)?.instance.debug?.() ?? null,
  sweep: () => app.sweepDebug(),
  sweepCsv: () => app.sweepCsv(),
  sweepPng: async () => {
    const blob = await app.sweepPng();
    if (!blob) return null;
    const image = await createImageBitmap(blob);
    return { width: image.width, height: image.height };
  },
  connected: () => app.stream.connected,
  stats: () => ({ ...app.stats }),
  /** Milliseconds from the server's snapshot timestamp to the frame that drew it (recent). */
  latencies: () => [...app.latencies],
  renderTimes: () => [...app.renderMs],
  format: fmt,
  formatSteps: fmtSteps,
};
(globalThis as unknown as { __lab: typeof debugHook }).__lab = debugHook;

app.start().catch((e) => alertError(e));
