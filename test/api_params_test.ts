/**
 * POST /api/runs refuses parameter values that are not numbers where numbers are due (null,
 * NaN-ish strings, booleans) and names that are not the experiment's own parameters (such as
 * "constructor", "toString" or "__proto__"), with 400 naming the field; nothing runs.
 */
import assert from "node:assert/strict";
import { createApp } from "../server/api/app.ts";
import { RunManager } from "../server/runs/manager.ts";

const backends = () =>
  Promise.resolve({
    backends: { wasm: { available: true, adapter: "test", fallback: false } },
    default_backend: "wasm",
  });

Deno.test("null, NaN-ish and non-number values and inherited names get 400 naming the field", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "lab-params-" });
  const manager = await RunManager.open({ dataDir, memoryLimitBytes: 64 * 2 ** 20 });
  const app = createApp({ manager, backends });
  try {
    const cases: Array<[string, string]> = [
      ['{"lr": null}', "params.lr"],
      ['{"lr": "NaN"}', "params.lr"],
      ['{"lr": "abc"}', "params.lr"],
      ['{"lr": true}', "params.lr"],
      ['{"d": null}', "params.d"],
      ['{"algo": null}', "params.algo"],
      ['{"lr": [0.01, null, 0.01, 0.01]}', "params.lr[1]"],
      ['{"constructor": 1}', "params.constructor"],
      ['{"toString": 1}', "params.toString"],
      ['{"__proto__": 1}', "params.__proto__"],
      ['{"hasOwnProperty": 0.1}', "params.hasOwnProperty"],
    ];
    for (const [params, field] of cases) {
      const body = `{"experiment": "shape-matters", "replicas": 4, "params": ${params}}`;
      const res = await app.request("/api/runs", {
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
      });
      const json = await res.json();
      assert.equal(res.status, 400, `${params}: ${res.status} ${JSON.stringify(json)}`);
      assert.ok(
        json.errors?.some((e: { field: string }) => e.field === field),
        `${params}: ${JSON.stringify(json.errors)}`,
      );
    }
    assert.equal(manager.ids().length, 0, "nothing was started");
  } finally {
    await manager.shutdown();
    await Deno.remove(dataDir, { recursive: true });
  }
});
