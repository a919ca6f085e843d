/**
 * Run checkpoints on disk (docs/checkpoints.md): `<id>.ckpt` beside the run's log, one per
 * run, replaced atomically (temporary file, fsync, rename, fsync of the directory) so that
 * the file is always either the previous complete checkpoint or the new one. The bytes are
 * an 8-byte magic, a 32-byte SHA-256 of the body, then the body (msgpack, typed arrays kept
 * typed); a file whose digest does not match is ignored, as if there were none.
 */
import { dirname } from "node:path";
import type { SessionState } from "../experiments/types.ts";
import { decodeRecord, encodeRecord } from "./records.ts";
import type { DriverCheckpoint } from "./driver.ts";
import { UsageError } from "../cli/args.ts";

export const CHECKPOINT_SUFFIX = ".ckpt";
/** Default compute time between a run's checkpoints (`--checkpoint-interval`). */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;
const MAGIC = new TextEncoder().encode("LABCKPT1");
const DIGEST_BYTES = 32;

/** What a run needs to continue: the session's state and where the run's records stood. */
export interface RunCheckpoint {
  format: "lab-checkpoint";
  version: 1;
  run: string;
  /** Seq of the last record emitted before the checkpoint: the log holds every record ≤ seq. */
  seq: number;
  /** The session's step (= state.step). */
  step: number;
  /** Replicas reported diverged so far (the driver fails a run when all have). */
  diverged: number[];
  /** ISO time of writing. */
  written: string;
  state: SessionState;
}

async function digest(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/** The checkpoint file's bytes. */
export async function encodeCheckpoint(ckpt: RunCheckpoint): Promise<Uint8Array> {
  const body = encodeRecord(ckpt);
  const out = new Uint8Array(MAGIC.length + DIGEST_BYTES + body.length);
  out.set(MAGIC, 0);
  out.set(await digest(body), MAGIC.length);
  out.set(body, MAGIC.length + DIGEST_BYTES);
  return out;
}

/** The checkpoint in `bytes`, or why it is not one. */
export async function decodeCheckpoint(
  bytes: Uint8Array,
): Promise<{ checkpoint: RunCheckpoint } | { error: string }> {
  const head = MAGIC.length + DIGEST_BYTES;
  if (bytes.length < head || MAGIC.some((b, i) => bytes[i] !== b)) {
    return { error: "not a lab checkpoint" };
  }
  const body = bytes.subarray(head);
  const want = bytes.subarray(MAGIC.length, head);
  const got = await digest(body);
  if (got.some((b, i) => b !== want[i])) return { error: "checksum mismatch (incomplete write?)" };
  try {
    const checkpoint = decodeRecord<RunCheckpoint>(body);
    if (checkpoint.format !== "lab-checkpoint" || checkpoint.version !== 1) {
      return { error: "unknown checkpoint format" };
    }
    return { checkpoint };
  } catch (e) {
    return { error: `undecodable: ${e instanceof Error ? e.message : e}` };
  }
}

/** Writes `ckpt` to `path` atomically; returns the bytes written. */
export async function writeCheckpoint(path: string, ckpt: RunCheckpoint): Promise<number> {
  const bytes = await encodeCheckpoint(ckpt);
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.syncData();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
  await syncDirectory(dirname(path));
  return bytes.length;
}

/** Makes a rename durable; not every platform can open a directory, which is then skipped. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch { /* best effort */ }
}

/**
 * The run's checkpoint, or null when there is none or it is damaged (reported through
 * `warn`; an incomplete checkpoint is ignored, never half used).
 */
export async function readCheckpoint(
  path: string,
  warn: (message: string) => void = () => {},
): Promise<RunCheckpoint | null> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const decoded = await decodeCheckpoint(bytes);
  if ("error" in decoded) {
    warn(`ignoring checkpoint: ${decoded.error}`);
    return null;
  }
  return decoded.checkpoint;
}

/** Writes the driver's checkpoint of run `run` to `path` (atomically). */
export function saveRunCheckpoint(path: string, run: string, c: DriverCheckpoint): Promise<number> {
  return writeCheckpoint(path, {
    format: "lab-checkpoint",
    version: 1,
    run,
    seq: c.seq,
    step: c.step,
    diverged: c.diverged,
    written: new Date().toISOString(),
    state: c.state,
  });
}

/** Deletes a run's checkpoint (and a leftover temporary file), if any. */
export async function removeCheckpoint(path: string): Promise<void> {
  for (const p of [path, `${path}.tmp`]) {
    try {
      await Deno.remove(p);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/**
 * `--checkpoint-interval=SECONDS` (serve and `lab run`) in milliseconds: undefined when the
 * flag is absent (the default applies), 0 turns checkpoints off.
 */
export function checkpointIntervalMs(raw: string | true | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const seconds = Number(raw);
  if (raw === true || raw.trim() === "" || !Number.isFinite(seconds) || seconds < 0) {
    throw new UsageError(
      `--checkpoint-interval must be a number of seconds ≥ 0 (0: no checkpoints), got ${raw}`,
    );
  }
  return seconds * 1000;
}

/** `<dir>/<id>.lablog` → `<dir>/<id>.ckpt`. */
export function checkpointPathFor(logPath: string): string {
  return logPath.replace(/\.lablog$/, "") + CHECKPOINT_SUFFIX;
}
