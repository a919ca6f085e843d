/**
 * The run log: an append-only file of length-prefixed msgpack records (4-byte little-endian
 * length, then the record). The header comes first; then snapshots, events, frames and
 * status changes in seq order. Each batch is written with one write() call and flushed, so a
 * crash loses at most the batch in flight; a reader ignores a truncated final record.
 */
import { type BodyRecord, decodeRecord, encodeRecord, type HeaderRecord } from "./records.ts";

export const RUNLOG_SUFFIX = ".lablog";

function frame(records: unknown[]): Uint8Array {
  const parts = records.map(encodeRecord);
  const total = parts.reduce((n, p) => n + 4 + p.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let off = 0;
  for (const p of parts) {
    view.setUint32(off, p.length, true);
    out.set(p, off + 4);
    off += 4 + p.length;
  }
  return out;
}

export class RunLogWriter {
  #file: Deno.FsFile;
  #closed = false;

  private constructor(file: Deno.FsFile, readonly path: string) {
    this.#file = file;
  }

  /** Creates a new log with its header. Refuses to overwrite an existing file. */
  static async create(path: string, header: HeaderRecord): Promise<RunLogWriter> {
    const file = await Deno.open(path, { write: true, createNew: true });
    const w = new RunLogWriter(file, path);
    w.appendSync([header]);
    return w;
  }

  /** Re-opens an existing log for appending (e.g. to mark an interrupted run). */
  static async append(path: string): Promise<RunLogWriter> {
    const file = await Deno.open(path, { append: true });
    return new RunLogWriter(file, path);
  }

  /** Appends records in one write; synchronous so that ordering with the stream is exact. */
  appendSync(records: unknown[]): void {
    if (this.#closed || records.length === 0) return;
    const bytes = frame(records);
    let written = 0;
    while (written < bytes.length) written += this.#file.writeSync(bytes.subarray(written));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file.syncDataSync();
    } catch { /* best effort on filesystems without fsync */ }
    this.#file.close();
  }
}

export interface RunLogContents {
  header: HeaderRecord;
  records: BodyRecord[];
  /** True if the file ended in a partial record (a crash mid-write). */
  truncated: boolean;
  /** Length of the intact prefix: truncate to this before appending after a crash. */
  validBytes: number;
}

/** Parses a whole log. Throws with the path if the file is not a lab run log. */
export function parseRunLog(bytes: Uint8Array, path = "(log)"): RunLogContents {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: unknown[] = [];
  let off = 0;
  let truncated = false;
  while (off < bytes.length) {
    if (off + 4 > bytes.length) {
      truncated = true;
      break;
    }
    const len = view.getUint32(off, true);
    if (off + 4 + len > bytes.length) {
      truncated = true;
      break;
    }
    try {
      records.push(decodeRecord(bytes.subarray(off + 4, off + 4 + len)));
    } catch {
      truncated = true;
      break;
    }
    off += 4 + len;
  }
  const header = records[0] as HeaderRecord | undefined;
  if (!header || header.type !== "header" || header.format !== "lab-runlog") {
    throw new Error(`${path} is not a lab run log (no lab-runlog header)`);
  }
  return { header, records: records.slice(1) as BodyRecord[], truncated, validBytes: off };
}

export async function readRunLog(path: string): Promise<RunLogContents> {
  return parseRunLog(await Deno.readFile(path), path);
}
