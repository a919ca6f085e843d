/**
 * Shards of a run (server/experiments/shard.ts, RunSpec.firstReplica): for every experiment, a
 * run of 4 or 5 replicas whose replicas differ (a sweep with per-replica data, or per-replica
 * lists), and the same run split into shards of 2 replicas. On each backend, every snapshot
 * metric of shard replica k equals the whole run's replica first + k bit for bit, frame rows
 * likewise, and the shards' events, with `replica` moved by first, are the whole run's events.
 * On the reference backend a shard with its firstReplica dropped must differ, so every case
 * exercises the offset (its noise, data or initialisation are keyed by replica).
 * WebGPU runs on llvmpipe here: the cases are tiny.
 */
import assert from "node:assert/strict";
import { getExperiment, validateRunSpec } from "../server/experiments/registry.ts";
import { SpecError } from "../server/experiments/schema.ts";
import { planShards, shardSpec } from "../server/experiments/shard.ts";
import type { AdvanceResult, BackendName, RunEvent, RunSpec } from "../server/experiments/types.ts";
import { openSession } from "../server/engine/open.ts";
import { collectAndDispose } from "./parity_helpers.ts";
import { waitFor } from "./lab_harness.ts";
import { createApp } from "../server/api/app.ts";
import { RunManager } from "../server/runs/manager.ts";

interface Case {
  name: string;
  body: Record<string, unknown>;
  /** Backends to run it on (webgpu only where llvmpipe finishes in seconds). */
  backends: BackendName[];
  /** Parameters a backend needs changed (webgpu has no stopping rule). */
  paramsOn?: Partial<Record<BackendName, Record<string, unknown>>>;
}

const ALL: BackendName[] = ["reference", "wasm", "webgpu"];
const PQ_SMALL = { d: 12, kappa_sq: 0.5, m: 8, n_test: 40, r_scale: 10, tau0: 0.3 };

const CASES: Case[] = [
  {
    name: "shape-matters label noise, lr × 2 seeds (per-replica data)",
    body: {
      experiment: "shape-matters",
      params: { algo: "label-noise", d: 16, n: 8, r: 3 },
      grid: { lr: [0.01, 0.02] },
      seeds: 2,
      steps: 40,
      every: 10,
    },
    backends: ALL,
  },
  {
    name: "shape-matters gaussian, per-replica lists, one replica diverges",
    body: {
      experiment: "shape-matters",
      params: {
        algo: "gaussian",
        d: 16,
        n: 8,
        r: 3,
        lr: [0.01, 0.02, 10, 0.015, 0.005],
        sigma: [0.1, 0.2, 0.1, 0.3, 0.05],
      },
      replicas: 5,
      steps: 40,
      every: 10,
    },
    backends: ALL,
  },
  {
    name: "linear-label-noise, σ × 2 seeds (per-replica data and init)",
    body: {
      experiment: "linear-label-noise",
      params: { algo: "label-noise-sgd", m: 9, d: 5, n: 11, n_test: 7, lr: 0.05, frame_every: 1 },
      grid: { sigma: [0.5, 2] },
      seeds: 2,
      steps: 40,
      every: 10,
    },
    backends: ALL,
  },
  {
    name: "linear-label-noise oscillation, online data per replica, per-replica lists",
    body: {
      experiment: "linear-label-noise",
      params: {
        algo: "oscillation",
        m: 9,
        d: 5,
        n_test: 7,
        data_mode: "online",
        data: "per-replica",
        lr: [0.01, 0.02, 0.005, 0.015, 0.03],
        frame_every: 1,
      },
      replicas: 5,
      steps: 40,
      every: 10,
    },
    backends: ALL,
  },
  {
    name: "large-lr large-then-small, η1 × 2 seeds (per-replica data)",
    body: {
      experiment: "large-lr",
      params: { ...PQ_SMALL, algo: "large-then-small", anneal: "step", anneal_step: 15 },
      grid: { eta1: [1, 2] },
      seeds: 2,
      steps: 30,
      every: 10,
    },
    backends: ALL,
  },
  {
    name: "large-lr small-preact-noise, shared data, per-replica lists",
    body: {
      experiment: "large-lr",
      params: {
        ...PQ_SMALL,
        algo: "small-preact-noise",
        data: "shared",
        noise_off_step: 20,
        eta2: [0.5, 0.4, 0.3, 0.6],
      },
      replicas: 4,
      steps: 30,
      every: 10,
    },
    backends: ALL,
  },
  {
    name: "label-noise-anneal lnsgd-ls, loss anneal and stop, δ × 2 seeds",
    body: {
      experiment: "label-noise-anneal",
      params: {
        ...PQ_SMALL,
        algo: "lnsgd-ls",
        eta1: 2,
        eta2: 0.1,
        anneal: "loss",
        epsilon1: 0.2,
        stop: "loss",
        anneal_check_every: 5,
      },
      grid: { delta: [0.1, 0.2] },
      seeds: 2,
      steps: 60,
      every: 10,
    },
    backends: ALL,
    paramsOn: { webgpu: { stop: "off" } },
  },
  {
    name: "pegr, σ_p × 2 seeds (per-replica data)",
    body: {
      experiment: "pegr",
      params: { algo: "pegr", d: 20, m: 3, n: 6, n_test: 30, lr: 0.1, lambda: 0.2, pegr_off: 15 },
      grid: { sigma_p: [0.5, 1] },
      seeds: 2,
      steps: 30,
      every: 10,
    },
    backends: ALL,
  },
];

const SHARD = 2;

function run(spec: RunSpec, backend: BackendName): Promise<AdvanceResult> {
  return openSession({ ...spec, backend }).then((s) => collectAndDispose(s, [spec.steps]));
}

/** Bit-identical float32 values (−0 ≠ 0; every NaN equals NaN). */
function sameBits(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

function assertShardMatches(
  full: AdvanceResult,
  part: AdvanceResult,
  first: number,
  count: number,
  what: string,
) {
  assert.deepEqual(part.snapshots.map((s) => s.step), full.snapshots.map((s) => s.step), what);
  full.snapshots.forEach((fs, i) => {
    const ps = part.snapshots[i];
    assert.deepEqual(Object.keys(ps.metrics).sort(), Object.keys(fs.metrics).sort(), what);
    for (const [name, values] of Object.entries(ps.metrics)) {
      assert.equal(values.length, count, `${what}: ${name} has one value per shard replica`);
      values.forEach((v, k) => {
        const want = fs.metrics[name][first + k];
        assert.ok(
          sameBits(v, want),
          `${what}: ${name} at step ${fs.step}, shard replica ${k} (replica ${
            first + k
          }): ${v} vs the whole run's ${want}`,
        );
      });
    }
  });
  assert.deepEqual(
    part.frames.map((f) => [f.name, f.step, f.width]),
    full.frames.map((f) => [f.name, f.step, f.width]),
    `${what} frames`,
  );
  full.frames.forEach((ff, i) => {
    const rows = ff.values.subarray(first * ff.width, (first + count) * ff.width);
    const pf = part.frames[i].values;
    assert.equal(pf.length, rows.length, `${what}: frame ${ff.name} at ${ff.step}`);
    rows.forEach((v, j) => {
      assert.ok(sameBits(pf[j], v), `${what}: frame ${ff.name} at ${ff.step}, entry ${j}`);
    });
  });
}

/** The merger's view of a shard's events: `replica` in the whole run's numbering. */
function globalEvents(events: RunEvent[], first: number): RunEvent[] {
  return events.map((e) =>
    "replica" in e && e.replica !== undefined ? { ...e, replica: e.replica + first } : e
  );
}

const sortedKeys = (events: RunEvent[]) => events.map((e) => JSON.stringify(e)).sort();

for (const c of CASES) {
  for (const backend of c.backends) {
    Deno.test(`shards = the whole run, ${backend}: ${c.name}`, async () => {
      const params = { ...c.body.params as object, ...c.paramsOn?.[backend] };
      const spec = validateRunSpec({ ...c.body, params });
      const full = await run(spec, backend);
      const merged: RunEvent[] = [];
      for (const { first, count } of planShards(spec.replicas, SHARD)) {
        const part = shardSpec(spec, first, count);
        const got = await run(part, backend);
        assertShardMatches(full, got, first, count, `${c.name}, shard ${first}+${count}`);
        merged.push(...globalEvents(got.events, first));
        if (backend === "reference" && first > 0) {
          // The offset matters: keyed as replicas 0.. instead, the shard computes other numbers.
          const { firstReplica: _, ...unkeyed } = part;
          const wrong = await run(unkeyed, backend);
          const last = full.snapshots.length - 1;
          const diverged = new Set(
            full.events.flatMap((e) => e.type === "replica_diverged" ? [e.replica] : []),
          );
          for (let k = 0; k < count; k++) {
            if (diverged.has(first + k)) continue; // NaN either way
            const differs = Object.entries(wrong.snapshots[last].metrics).some(
              ([name, values]) =>
                !sameBits(values[k], full.snapshots[last].metrics[name][first + k]),
            );
            assert.ok(differs, `${c.name}: replica ${first + k} does not depend on its key`);
          }
        }
      }
      assert.deepEqual(sortedKeys(merged), sortedKeys(full.events), `${c.name}: events`);
    });
  }
}

Deno.test("shardSpec slices per-replica lists and the sweep's settings", () => {
  const spec = validateRunSpec({
    experiment: "shape-matters",
    params: { algo: "label-noise", sigma: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6] },
    grid: { lr: [0.01, 0.02, 0.03] },
    seeds: 2,
  });
  const part = shardSpec(spec, 2, 3);
  assert.equal(part.replicas, 3);
  assert.equal(part.firstReplica, 2);
  assert.deepEqual(part.params.lr, [0.02, 0.02, 0.03]);
  assert.deepEqual(part.params.sigma, [0.3, 0.4, 0.5]);
  assert.equal(part.params.delta, spec.params.delta);
  assert.equal(part.params.data, "per-replica");
  assert.deepEqual(part.sweep?.settings, spec.sweep?.settings.slice(2, 5));
  assert.deepEqual(part.sweep?.values, spec.sweep?.values);
  // The shard is a valid spec by itself: its plain part validates to itself.
  const { sweep: _, ...plain } = part;
  assert.deepEqual(validateRunSpec(plain), plain);
  // A shard of a shard is the range of the whole run.
  const inner = shardSpec(part, 1, 2);
  assert.equal(inner.firstReplica, 3);
  assert.deepEqual(inner.params.sigma, [0.4, 0.5]);
  // The first shard and the whole run carry no firstReplica.
  assert.equal("firstReplica" in shardSpec(spec, 0, 2), false);
  assert.equal(shardSpec(spec, 0, 6), spec);
});

Deno.test("shardSpec refuses ranges outside the run and large-lr's noise pairs", () => {
  const spec = validateRunSpec({ experiment: "shape-matters", replicas: 4 });
  for (const [first, count] of [[-1, 2], [3, 2], [0, 0], [1.5, 1]]) {
    assert.throws(
      () => shardSpec(spec, first, count),
      (e) => e instanceof SpecError && e.errors[0].field === "firstReplica",
    );
  }
  const pairs = validateRunSpec({
    experiment: "large-lr",
    replicas: 4,
    params: { noise_pairs: "on" },
  });
  assert.throws(
    () => shardSpec(pairs, 2, 2),
    (e) => e instanceof SpecError && /cannot be sharded/.test(e.message),
  );
});

Deno.test("planShards covers the replicas in order", () => {
  assert.deepEqual(planShards(5, 2), [
    { first: 0, count: 2 },
    { first: 2, count: 2 },
    { first: 4, count: 1 },
  ]);
  assert.deepEqual(planShards(4, 4), [{ first: 0, count: 4 }]);
  assert.deepEqual(planShards(3, 10), [{ first: 0, count: 3 }]);
  assert.throws(() => planShards(4, 0), RangeError);
  assert.throws(() => planShards(0, 1), RangeError);
});

Deno.test("firstReplica: validated, 0 is left out", () => {
  const base = { experiment: "shape-matters", replicas: 2 };
  assert.deepEqual(validateRunSpec({ ...base, firstReplica: 0 }), validateRunSpec(base));
  assert.equal(validateRunSpec({ ...base, firstReplica: 7 }).firstReplica, 7);
  for (const bad of [-1, 1.5, "3", null, 65536]) {
    assert.throws(
      () => validateRunSpec({ ...base, firstReplica: bad }),
      (e) =>
        e instanceof SpecError && e.errors.some((f) => f.field === "firstReplica") &&
        /integer/.test(e.message),
      `firstReplica ${JSON.stringify(bad)}`,
    );
  }
  assert.throws(
    () => validateRunSpec({ ...base, firstReplica: 65535 }),
    (e) => e instanceof SpecError && /past the limit/.test(e.message),
  );
  assert.throws(
    () =>
      validateRunSpec({
        ...base,
        replicas: undefined,
        grid: { lr: [1e-3, 2e-3] },
        firstReplica: 2,
      }),
    (e) => e instanceof SpecError && e.errors.some((f) => f.field === "firstReplica"),
  );
  // noise pairs need the whole run.
  assert.throws(
    () => {
      const s = validateRunSpec({
        experiment: "large-lr",
        replicas: 2,
        firstReplica: 2,
        params: { noise_pairs: "on" },
      });
      getExperiment("large-lr").prepare(s);
    },
    (e) => e instanceof SpecError && e.errors[0].field === "firstReplica",
  );
});

Deno.test(
  "a shard posted to the API runs, and is stored, as the whole run's replicas",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-shard-" });
    const manager = await RunManager.open({ dataDir, memoryLimitBytes: 64 * 2 ** 20 });
    const backends = () =>
      Promise.resolve({
        backends: { wasm: { available: true, adapter: "test", fallback: false } },
        default_backend: "wasm",
      });
    try {
      const app = createApp({ manager, backends });
      const body = {
        experiment: "shape-matters",
        params: { algo: "label-noise", d: 16, n: 8, r: 3 },
        grid: { lr: [0.01, 0.02] },
        seeds: 2,
        steps: 200,
        every: 50,
        backend: "wasm",
      };
      const { sweep: _, ...shard } = shardSpec(validateRunSpec(body), 1, 3);
      const post = async (spec: unknown) => {
        const res = await app.request("/api/runs", {
          method: "POST",
          body: JSON.stringify(spec),
          headers: { "content-type": "application/json" },
        });
        assert.equal(res.status, 201, await res.clone().text());
        return (await res.json()).id as string;
      };
      const [fullId, shardId] = [await post(body), await post(shard)];
      await waitFor(
        () => manager.status(fullId) === "finished" && manager.status(shardId) === "finished",
        "both runs finish",
      );
      const detail = async (id: string) => await (await app.request(`/api/runs/${id}`)).json();
      const [full, part] = [await detail(fullId), await detail(shardId)];
      assert.equal(part.spec.firstReplica, 1);
      assert.equal(part.latest.step, full.latest.step);
      for (
        const [name, values] of Object.entries(part.latest.metrics as Record<string, number[]>)
      ) {
        assert.deepEqual(
          Array.from(values),
          Array.from(full.latest.metrics[name]).slice(1, 4),
          name,
        );
      }
    } finally {
      await manager.shutdown();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
