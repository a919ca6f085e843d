/**
 * What the sweep browser tests share: reading a run's final values from its CSV export (the
 * numbers a sweep view must equal), waiting for runs to finish, starting one through the API,
 * and comparing floats to float32 print precision.
 */
import assert from "node:assert/strict";

/** Per replica, the final logged values of `metric` (the run's CSV export). */
export async function finalValues(base: string, id: string, metric: string): Promise<number[]> {
  const text = await (await fetch(`${base}/api/runs/${id}/metrics.csv`)).text();
  const [head, ...rows] = text.trim().split("\n");
  const cols = head.split(",");
  const step = cols.indexOf("step"), rep = cols.indexOf("replica"), m = cols.indexOf(metric);
  assert.ok(step >= 0 && rep >= 0 && m >= 0, `CSV columns: ${head}`);
  const last = Math.max(...rows.map((r) => Number(r.split(",")[step])));
  const out: number[] = [];
  for (const r of rows) {
    const c = r.split(",");
    if (Number(c[step]) === last) out[Number(c[rep])] = Number(c[m]);
  }
  return out;
}

export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(1e-30, Math.abs(b)), `${what}: ${a} vs ${b}`);

export async function post(base: string, body: unknown): Promise<string> {
  const res = await fetch(`${base}/api/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  assert.equal(res.status, 201, JSON.stringify(json));
  return json.id;
}

export async function waitFinished(base: string, ids: string[]): Promise<void> {
  for (;;) {
    const runs: { id: string; status: string }[] = await (await fetch(`${base}/api/runs`)).json();
    const mine = runs.filter((r) => ids.includes(r.id));
    if (mine.length === ids.length && mine.every((r) => r.status === "finished")) return;
    const bad = mine.find((r) => r.status === "failed" || r.status === "stopped");
    if (bad) throw new Error(`run ${bad.id} ${bad.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
