/**
 * Probe (not a test; issue 10): the step rate of a shape-matters `every=1` run on a running
 * server, unwatched and then with one live WebSocket subscriber to the run. The stream sends
 * one message per snapshot, so a watched `every=1` run is bounded by the main thread's encoding
 * (docs/storage.md); this measures by how much.
 *
 *   deno task serve --port=8420 &
 *   deno run -A test/watched_run_probe.ts [URL=http://127.0.0.1:8420] [STEPS=3000000]
 */
import { streamUrl, wirePackr } from "../client/protocol.ts";

const url = Deno.args[0] ?? "http://127.0.0.1:8420";
const steps = Number(Deno.args[1] ?? 3_000_000);

interface Summary {
  status: string;
  step: number;
  started: string;
  ended: string;
}

/**
 * Submits the run and waits for it to end: its steps per second of computing. `submitted`
 * hears its id at once (to subscribe to it).
 */
async function stepRate(submitted?: (id: string) => void): Promise<number> {
  const res = await fetch(`${url}/api/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      experiment: "shape-matters",
      params: { d: 20, n: 10 },
      replicas: 4,
      steps,
      every: 1,
      backend: "wasm",
    }),
  });
  const { id, error } = await res.json();
  if (!id) throw new Error(`submit failed: ${error}`);
  submitted?.(id);
  while (true) {
    await new Promise((r) => setTimeout(r, 300));
    const d = await (await fetch(`${url}/api/runs/${id}`)).json() as Summary;
    if (!["queued", "running"].includes(d.status)) {
      return d.step / ((Date.parse(d.ended) - Date.parse(d.started)) / 1000);
    }
  }
}

console.log(`unwatched: ${Math.round(await stepRate())} steps/s`);

const counts = { messages: 0, snapshots: 0, skipped: 0 };
let finishedAt = 0;
const ws = new WebSocket(streamUrl(url));
ws.binaryType = "arraybuffer";
await new Promise((resolve, reject) => (ws.onopen = resolve, ws.onerror = reject));
ws.onmessage = (e) => {
  const m = wirePackr.unpack(new Uint8Array(e.data)) as { type: string; status?: string };
  counts.messages++;
  if (m.type === "snapshot") counts.snapshots++;
  if (m.type === "skipped") counts.skipped++;
  if (m.type === "status" && m.status === "finished") finishedAt = performance.now();
};
// The whole run, from its first record, as the dashboard follows a run it opens.
const watched = await stepRate((id) =>
  ws.send(JSON.stringify({ type: "subscribe", runs: [id], since: { [id]: 0 } }))
);
const ended = performance.now();
// The stream may still be sending when the run ends: wait for its final status (2 min at most).
while (!finishedAt && performance.now() - ended < 120_000) {
  await new Promise((r) => setTimeout(r, 100));
}
ws.close();
console.log(
  `watched: ${Math.round(watched)} steps/s; ${counts.snapshots} snapshot messages, ` +
    `${counts.skipped} skipped notices, ${counts.messages} messages in all; the final status ` +
    (finishedAt
      ? `came ${((finishedAt - ended) / 1000).toFixed(1)} s after the run ended`
      : "had not come 2 min after the run ended"),
);
