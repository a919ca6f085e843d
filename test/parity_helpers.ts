/**
 * Helpers shared by the parity tests: running a session through advance() targets, the
 * NaN-aware tolerance check, the snapshot-by-snapshot metric comparison, and the guard of
 * the tests that only mean something on llvmpipe.
 */
import assert from "node:assert/strict";
import type { AdvanceResult, KernelSession } from "../server/experiments/types.ts";
import { getGpu, isLlvmpipe } from "../server/engine/webgpu/device.ts";

/** Advances a session through `targets` and concatenates what the calls returned. */
export async function collect(session: KernelSession, targets: number[]): Promise<AdvanceResult> {
  const all: AdvanceResult = { snapshots: [], events: [], frames: [] };
  for (const target of targets) {
    const r = await session.advance(target);
    all.snapshots.push(...r.snapshots);
    all.events.push(...r.events);
    all.frames.push(...r.frames);
  }
  return all;
}

/** collect(), then dispose of the session (also when a call fails). */
export async function collectAndDispose(
  session: KernelSession,
  targets: number[],
): Promise<AdvanceResult> {
  try {
    return await collect(session, targets);
  } finally {
    await session.dispose();
  }
}

/** What each advance() call through `targets` returned, call by call. */
export async function runAll(session: KernelSession, targets: number[]): Promise<AdvanceResult[]> {
  const out: AdvanceResult[] = [];
  for (const t of targets) out.push(await session.advance(t));
  return out;
}

/** |want − got| ≤ rel·max(|want|, |got|) + abs; NaN matches only NaN. */
export function relClose(want: number, got: number, rel: number, abs: number): boolean {
  if (Number.isNaN(want) || Number.isNaN(got)) return Number.isNaN(want) && Number.isNaN(got);
  return Math.abs(want - got) <= rel * Math.max(Math.abs(want), Math.abs(got)) + abs;
}

/**
 * Same snapshot steps, and every metric of every replica at every snapshot accepted by
 * `ok(name, want, got)`.
 */
export function assertSnapshotsMatch(
  want: AdvanceResult,
  got: AdvanceResult,
  what: string,
  ok: (name: string, want: number, got: number) => boolean,
): void {
  assert.deepEqual(got.snapshots.map((s) => s.step), want.snapshots.map((s) => s.step), what);
  want.snapshots.forEach((ws, index) => {
    const gs = got.snapshots[index];
    for (const [name, values] of Object.entries(ws.metrics)) {
      values.forEach((w, r) => {
        const g = gs.metrics[name][r];
        assert.ok(
          ok(name, w, g),
          `${what}: ${name} at step ${ws.step}, replica ${r}: ${w} vs ${g}`,
        );
      });
    }
  });
}

/** The same events (type, step and every field), in the same order. */
export function assertSameEvents(want: AdvanceResult, got: AdvanceResult, what: string): void {
  const key = (e: { step: number; type: string }) => JSON.stringify(e);
  assert.deepEqual(got.events.map(key), want.events.map(key), `${what} events`);
}

/** True on llvmpipe; elsewhere says there is no loop limit to check. */
export async function onLlvmpipe(): Promise<boolean> {
  const gpu = await getGpu();
  if (!isLlvmpipe(gpu)) {
    console.log(`${gpu.adapterName} has no loop limit; nothing to check`);
    return false;
  }
  return true;
}
