/**
 * Frame time of the dashboard while 8 runs × 4 metrics stream (`deno task bench --dashboard`).
 * Starts a lab on a free port with a temp data dir, opens the page in Debian's headless
 * Chromium, starts 8 Shape Matters runs (4 replicas, a snapshot every 100 steps, long enough
 * to stream throughout) and shows them all, then measures in the page the intervals between
 * requestAnimationFrame callbacks for a few seconds (the tab's time per frame, our redraws
 * included), how long each coalesced redraw took, and how long a snapshot took from the
 * server's timestamp to the frame that drew it.
 *
 * Two cases, so the dashboard's own cost can be told from the machine's:
 *  - paced_*: the runs' kernels are replaced by a paced generator (10k steps/s per run,
 *    cheap synthetic values), so the browser is not starved by 8 compute workers;
 *  - wasm_*: the real Wasm kernels, 8 at once. On a small machine these compete with the
 *    browser for the cores, which is what a user of a laptop sees.
 * Numbers depend on the machine; compare ratios inside one run.
 */
import { chromium } from "playwright-core";
import { startLab } from "../server/api/server.ts";
import type { AdvanceResult, KernelSession, RunSpec } from "../server/experiments/types.ts";
import { isSnapshotStep, stampWallTimes } from "../server/engine/snapshots.ts";
import { SHAPE_MATTERS_METRICS } from "../server/experiments/shape_matters.ts";
import { CHROMIUM_ARGS, requireDashboardPrerequisites } from "./browser_harness.ts";

const RUNS = 8;
const MEASURE_MS = 5000;
const PACED_STEPS_PER_SECOND = 10_000;

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i];
}

/** A stand-in kernel: real snapshot cadence and shapes, synthetic values, no compute. */
export { pacedSession as pacedSessionForDev };
function pacedSession(spec: RunSpec): KernelSession {
  const R = spec.replicas, d = Number(spec.params.d ?? 100);
  const names = SHAPE_MATTERS_METRICS.map((m) => m.name);
  const start = performance.now();
  let step = 0, initial = true;
  const values = (at: number) => {
    const metrics: Record<string, Float32Array> = {};
    names.forEach((name, k) => {
      const v = new Float32Array(R);
      for (let r = 0; r < R; r++) {
        v[r] = (1 + k) * Math.exp(-at / (2e5 * (1 + r / 8))) * (1 + 0.05 * Math.sin(at / 977 + r));
      }
      metrics[name] = v;
    });
    return { step: at, wallMs: 0, metrics };
  };
  return {
    backend: "wasm",
    adapter: "paced synthetic kernel (benchmark)",
    get step() {
      return step;
    },
    async advance(target: number): Promise<AdvanceResult> {
      target = Math.min(target, spec.steps);
      const from = step, t0 = performance.now() - start;
      await new Promise((r) => setTimeout(r, ((target - step) / PACED_STEPS_PER_SECOND) * 1000));
      const result: AdvanceResult = { snapshots: [], events: [], frames: [] };
      if (initial) result.snapshots.push(values(0));
      initial = false;
      for (let s = step + 1; s <= target; s++) {
        if (isSnapshotStep(s, spec.every, spec.steps)) result.snapshots.push(values(s));
      }
      step = target;
      const frame = new Float32Array(R * d);
      for (let i = 0; i < frame.length; i++) frame[i] = Math.abs(Math.sin(i + step / 1e4));
      result.frames.push({ step, name: "v_sq", values: frame, width: d });
      stampWallTimes(result.snapshots, from, step, t0, performance.now() - start);
      return result;
    },
    dispose() {},
  };
}

async function measure(paced: boolean): Promise<Record<string, number>> {
  const dataDir = await Deno.makeTempDir({ prefix: "lab-dashboard-bench-" });
  const lab = await startLab({
    port: 0,
    hostname: "127.0.0.1",
    dataDir,
    maxConcurrent: { wasm: RUNS, reference: RUNS, webgpu: 1 },
    ...(paced ? { openSession: (spec: RunSpec) => Promise.resolve(pacedSession(spec)) } : {}),
  });
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: CHROMIUM_ARGS,
  });
  const ids: string[] = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    const algos = ["gd", "label-noise", "minibatch-noise", "gaussian"];
    for (let i = 0; i < RUNS; i++) {
      const res = await fetch(`${lab.url}/api/runs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          experiment: "shape-matters",
          params: { algo: algos[i % algos.length], seed: 123 + Math.floor(i / algos.length) },
          replicas: 4,
          steps: 100_000_000,
          every: 100,
          backend: "wasm",
        }),
      });
      if (res.status !== 201) {
        throw new Error(`starting run ${i}: ${res.status} ${await res.text()}`);
      }
      ids.push((await res.json()).id);
    }
    await page.goto(`${lab.url}/?runs=${ids.join(",")}`);
    await page.waitForFunction(
      (n) =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).__lab?.runs().filter((r: { rows: number }) => r.rows > 5).length === n,
      RUNS,
      { timeout: 60_000 },
    );
    const stats = () =>
      page.evaluate(() => {
        // deno-lint-ignore no-explicit-any
        const l = (globalThis as any).__lab;
        return { ...l.stats(), at: performance.now() };
      });
    const before = await stats();
    const frames: number[] = await page.evaluate((ms) =>
      new Promise<number[]>((resolve) => {
        const deltas: number[] = [];
        let last = performance.now();
        const end = last + ms;
        const tick = (t: number) => {
          deltas.push(t - last);
          last = t;
          if (t < end) requestAnimationFrame(tick);
          else resolve(deltas);
        };
        requestAnimationFrame(tick);
      }), MEASURE_MS);
    const after = await stats();
    const probe = await page.evaluate(() => {
      // deno-lint-ignore no-explicit-any
      const l = (globalThis as any).__lab;
      return {
        latencies: l.latencies() as number[],
        renders: l.renderTimes() as number[],
        rows: l.runs().map((r: { rows: number }) => r.rows) as number[],
      };
    });
    const sorted = frames.slice(1).sort((a, b) => a - b);
    const redraws = probe.renders.slice(-Math.max(1, after.renders - before.renders)).sort((a, b) =>
      a - b
    );
    const latency = probe.latencies.slice(-2000).sort((a, b) => a - b);
    const seconds = (after.at - before.at) / 1000;
    const stream = (await (await fetch(`${lab.url}/api/health`)).json()).stream ?? {};
    return {
      frame_ms_p50: quantile(sorted, 0.5),
      frame_ms_p95: quantile(sorted, 0.95),
      frame_ms_max: sorted[sorted.length - 1] ?? NaN,
      frames_over_50ms: sorted.filter((d) => d > 50).length,
      redraw_ms_p50: quantile(redraws, 0.5),
      redraw_ms_p95: quantile(redraws, 0.95),
      redraws_per_s: (after.renders - before.renders) / seconds,
      records_per_s: (after.records - before.records) / seconds,
      snapshot_to_screen_ms_p50: quantile(latency, 0.5),
      snapshot_to_screen_ms_p95: quantile(latency, 0.95),
      rows_per_run_min: Math.min(...probe.rows),
      // Records the server coalesced for this page (it could not keep up) and sockets closed.
      stream_skipped_records: stream.skipped_records ?? NaN,
      stream_stalled_closed: stream.stalled_closed ?? NaN,
    };
  } finally {
    await Promise.all(
      ids.map((id) =>
        fetch(`${lab.url}/api/runs/${id}/stop`, { method: "POST" }).then(
          (r) => r.body?.cancel(),
          () => {},
        )
      ),
    );
    // Close the page before the server so no reconnect is in flight during shutdown.
    await browser.close();
    await new Promise((r) => setTimeout(r, 300));
    await lab.shutdown();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

export async function benchDashboard(): Promise<Record<string, number>> {
  await requireDashboardPrerequisites();
  const out: Record<string, number> = { runs: RUNS, metrics: 4, replicas: 4 };
  for (const [prefix, paced] of [["paced", true], ["wasm", false]] as const) {
    const r = await measure(paced).catch((e) => {
      console.error(prefix, e);
      throw e;
    });
    for (const [k, v] of Object.entries(r)) out[`${prefix}_${k}`] = v;
  }
  return out;
}

if (import.meta.main) console.log(JSON.stringify(await benchDashboard(), null, 1));
