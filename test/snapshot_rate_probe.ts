/**
 * Probe (not a test; issue 10): the engine's step rate at a snapshot every step, against the
 * same run at every=1000. shape-matters d=20 n=10, 4 replicas, 300000 steps on wasm, advanced in
 * calls of about CHUNK_MS ms, in one session (openSession, THREADS=1) or split over THREADS
 * workers (openThreadedSession); every=1 asks for columns (AdvanceOptions), once with the
 * consumer handing each result's buffers back (recycleColumnBuffers). The variants interleave
 * ROUNDS times; each reports its best rate (the box is shared and noisy).
 *
 *   deno run -A test/snapshot_rate_probe.ts [THREADS=1] [ROUNDS=5] [CHUNK_MS=100]
 */
import { validateRunSpec } from "../server/experiments/registry.ts";
import { openSession } from "../server/engine/open.ts";
import { openThreadedSession } from "../server/engine/threaded_session.ts";
import { ensureWasm } from "../server/build_wasm.ts";
import {
  columnBuffers,
  recycleColumnBuffers,
  resultColumns,
} from "../server/engine/snapshot_columns.ts";
await ensureWasm();
const threads = Number(Deno.args[0] ?? 1);
const rounds = Number(Deno.args[1] ?? 5);
const chunkMs = Number(Deno.args[2] ?? 100);
const steps = 300000;
const spec = (every: number) => ({
  ...validateRunSpec({
    experiment: "shape-matters",
    replicas: 4,
    steps,
    every,
    params: { d: 20, n: 10 },
  }),
  backend: "wasm" as const,
});
async function rate(every: number, columns: boolean, recycle: boolean) {
  const s = spec(every);
  const session = threads > 1
    ? await openThreadedSession(s, undefined, { threads })
    : await openSession(s);
  let chunk = 1000, rows = 0;
  const t0 = performance.now();
  while (session.step < steps) {
    const a = performance.now();
    const r = await session.advance(Math.min(steps, session.step + chunk), { columns });
    const c = resultColumns(r, 4);
    rows += c.steps.length;
    if (recycle && r.columns) recycleColumnBuffers(columnBuffers(c));
    chunk = Math.max(
      10,
      Math.round(chunk * Math.min(4, chunkMs / Math.max(0.05, performance.now() - a))),
    );
  }
  const sec = (performance.now() - t0) / 1000;
  await session.dispose();
  if (rows !== (every === 1 ? steps + 1 : steps / every + 1)) throw new Error(`rows ${rows}`);
  return steps / sec;
}
const variants: [string, number, boolean, boolean][] = [
  ["every=1000", 1000, false, false],
  ["every=1 columns", 1, true, false],
  ["every=1 columns, consumer recycles", 1, true, true],
];
const best = new Map<string, number>();
for (let k = 0; k < rounds; k++) {
  for (const [name, every, columns, recycle] of variants) {
    const r = await rate(every, columns, recycle);
    best.set(name, Math.max(best.get(name) ?? 0, r));
  }
}
const base = best.get("every=1000")!;
for (const [name, r] of best) {
  console.log(
    `threads=${threads} ${name}: ${(r / 1e6).toFixed(3)} Msteps/s, ratio ${(r / base).toFixed(2)}`,
  );
}
