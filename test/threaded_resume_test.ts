/**
 * A threaded run through the server's manager survives a restart: a run split across 3
 * workers (`serve --threads=3`) is shut down mid-flight, its checkpoint holds the three
 * shards' states, and a server started with `--threads=1` resumes it on its own (a graceful stop's
 * `interrupted` is resumed by the next start) on those shards to the records an uninterrupted one-thread run logs (snapshots, events, frames), bit for bit.
 */
import assert from "node:assert/strict";
import { startTestLab, waitFor } from "./lab_harness.ts";
import { checkpointPathFor, readCheckpoint } from "../server/runs/checkpoints.ts";
import type { BodyRecord } from "../server/runs/records.ts";
import type { RunManager } from "../server/runs/manager.ts";
import { ensureWasm } from "../server/build_wasm.ts";

await ensureWasm();

const SPEC = {
  experiment: "shape-matters",
  params: { algo: "label-noise", d: 20, n: 10, r: 3, lr: [0.01, 0.02, 0.015, 0.005, 10, 0.012] },
  replicas: 6,
  steps: 2_000_000,
  every: 20_000,
  backend: "wasm",
};

/** A run's snapshots, frames and events (not `resumed`), without host times and seqs. */
async function numbers(manager: RunManager, id: string) {
  const records: BodyRecord[] = await manager.allRecords(id);
  return records.flatMap((r): Record<string, unknown>[] => {
    if (r.type === "snapshot") return [{ type: r.type, step: r.step, metrics: r.metrics }];
    if (r.type === "frame") return [{ type: r.type, step: r.step, name: r.name, values: r.values }];
    if (r.type === "event" && r.event.type !== "resumed") return [{ type: r.type, event: r.event }];
    return [];
  });
}

const ended = (m: RunManager, id: string) =>
  ["finished", "failed", "stopped", "interrupted"].includes(m.status(id) ?? "");

Deno.test(
  "a threaded run shut down mid-flight resumes on its shards with one thread, bit for bit",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "lab-threads-" });
    try {
      const first = await startTestLab({ dataDir, threads: 3, checkpointIntervalMs: 50 });
      const id = await first.manager.submit(SPEC);
      await waitFor(() => first.manager.step(id) >= 3 * SPEC.every, "progress before the stop");
      await first.close(); // graceful: checkpoint, then `interrupted`
      const ckpt = await readCheckpoint(checkpointPathFor(`${dataDir}/runs/${id}.lablog`));
      assert.ok(ckpt, "a checkpoint was written");
      assert.ok(ckpt.step < SPEC.steps, `stopped mid-flight (at ${ckpt.step})`);
      assert.deepEqual(ckpt.state.shards?.map((s) => [s.first, s.count]), [[0, 2], [2, 2], [4, 2]]);

      const second = await startTestLab({ dataDir, threads: 1 });
      try {
        // Resumed by the start itself, on the checkpoint's shards whatever the thread count now.
        await waitFor(
          () => ["finished", "failed"].includes(second.manager.status(id) ?? ""),
          "the resumed run to end",
        );
        assert.equal(second.manager.status(id), "finished");
        const straight = await second.manager.submit(SPEC);
        await waitFor(() => ended(second.manager, straight), "the one-thread run to end");
        const resumed = await numbers(second.manager, id);
        assert.ok(resumed.some((r) => JSON.stringify(r.event ?? "").includes("replica_diverged")));
        assert.deepStrictEqual(resumed, await numbers(second.manager, straight));
      } finally {
        await second.close();
      }
    } finally {
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
);
