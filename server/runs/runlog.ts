/**
 * The run log: an append-only file of framed msgpack records, the source of truth for a run
 * (docs/storage.md). The header comes first; then snapshots, events, frames and status
 * changes in seq order. Each batch is written with one write() call, so a crash loses at most
 * the batch in flight.
 *
 * Version 2 (written now) starts with an 8-byte magic and frames each record as TFRecord does:
 * `[length u32][masked CRC32C of the length u32][payload][masked CRC32C of the payload u32]`,
 * little-endian. A reader skips a damaged frame by searching forward for the next frame whose
 * length checksum holds (one check per byte, so resynchronising is cheap), and reports what it
 * skipped; it never cuts the file. Version 1 (`[length u32][payload]`, no magic) still opens:
 * there a frame is accepted when its payload decodes to a record.
 */
import { maskedCrc32c } from "./crc32c.ts";
import {
  blockRow,
  type BodyRecord,
  decodeRecord,
  encodeRecordTransient,
  expandSnapshots,
  type HeaderRecord,
  type LogRecord,
} from "./records.ts";

export const RUNLOG_SUFFIX = ".lablog";
/** "LABLOG", version byte 2, newline. */
export const RUNLOG_MAGIC = new Uint8Array([0x4c, 0x41, 0x42, 0x4c, 0x4f, 0x47, 0x02, 0x0a]);
/** Larger frames are taken as damage (a frame is one batch record, far below this). */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;

/** Why a write to a run log failed, in words without paths (the message reaches users). */
export class RunLogWriteError extends Error {
  constructor(readonly diskFull: boolean, message: string) {
    super(message);
    this.name = "RunLogWriteError";
  }
}

/** Describes a filesystem error for a user: the cause, never the path. */
export function describeWriteError(e: unknown, what: string): RunLogWriteError {
  const full = e instanceof Error && /No space left|os error 28|ENOSPC|quota/i.test(e.message);
  if (full) return new RunLogWriteError(true, `disk full while writing ${what}`);
  const ro = e instanceof Deno.errors.PermissionDenied ||
    (e instanceof Error && /Read-only file system|os error 30|EROFS/i.test(e.message));
  if (ro) return new RunLogWriteError(false, `the data directory is read-only (writing ${what})`);
  const code = e instanceof Error && "code" in e ? ` (${(e as { code: string }).code})` : "";
  return new RunLogWriteError(false, `write error while writing ${what}${code}`);
}

/**
 * Frames records for a log of the given version. With `into`, the frames are written into
 * that reusable buffer (grown to the largest batch, a few MB for an `every=1` run) and the
 * result is a view of it, valid until the next call with the same one: such a run writes
 * tens of MB a second, and fresh memory for each batch costs a page fault per 4 KiB.
 */
export function frameRecords(records: unknown[], version: number, into?: FrameBuffer): Uint8Array {
  const overhead = version >= 2 ? 12 : 4;
  const buf = into ?? new FrameBuffer();
  let off = 0;
  for (const record of records) {
    // Copied below before anything else is encoded.
    const p = encodeRecordTransient(record);
    const end = off + overhead + p.length;
    buf.reserve(end, off);
    const out = buf.bytes;
    const view = buf.view;
    view.setUint32(off, p.length, true);
    if (version >= 2) {
      view.setUint32(off + 4, maskedCrc32c(out.subarray(off, off + 4)), true);
      out.set(p, off + 8);
      view.setUint32(off + 8 + p.length, maskedCrc32c(p), true);
    } else out.set(p, off + 4);
    off = end;
  }
  return into ? buf.bytes.subarray(0, off) : buf.bytes.slice(0, off);
}

/** A writer's reusable memory for its frames. */
export class FrameBuffer {
  bytes = new Uint8Array(1 << 16);
  view = new DataView(this.bytes.buffer);

  /** Makes room for `size` bytes, keeping the first `keep`. */
  reserve(size: number, keep: number): void {
    if (size <= this.bytes.length) return;
    const bigger = new Uint8Array(Math.max(size, 2 * this.bytes.length));
    bigger.set(this.bytes.subarray(0, keep));
    this.bytes = bigger;
    this.view = new DataView(bigger.buffer);
  }
}

/** Where each record of an appended batch landed: byte offsets of its frame. */
export interface Placed {
  record: LogRecord;
  offset: number;
  end: number;
}

export type AppendListener = (placed: Placed[]) => void;

/**
 * Appends to one run log. The descriptor is opened on demand and can be released with
 * `suspend()` (a queued run holds none); a write error closes it and is thrown as a
 * RunLogWriteError, after the partial batch has been cut off again so the file ends on a
 * whole frame.
 */
export class RunLogWriter {
  #file?: Deno.FsFile;
  #closed = false;
  #size: number;
  #listeners = new Set<AppendListener>();
  #frames = new FrameBuffer();

  private constructor(
    readonly path: string,
    readonly version: number,
    size: number,
    readonly what: string,
  ) {
    this.#size = size;
  }

  /** Creates a new log with its header. Refuses to overwrite an existing file. */
  static async create(path: string, header: HeaderRecord): Promise<RunLogWriter> {
    const what = `run ${header.id}`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { write: true, createNew: true });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) throw e;
      throw describeWriteError(e, what);
    }
    const bytes = concat(RUNLOG_MAGIC, frameRecords([{ ...header, version: 2 }], 2));
    try {
      writeAll(file, bytes);
    } catch (e) {
      file.close();
      try {
        Deno.removeSync(path);
      } catch { /* nothing to clean */ }
      throw describeWriteError(e, what);
    }
    const w = new RunLogWriter(path, 2, bytes.length, what);
    w.#file = file;
    return w;
  }

  /** Re-opens an existing log for appending, in its own framing version. */
  static async append(path: string, what = "a run log"): Promise<RunLogWriter> {
    const { version } = await readRunLogHeader(path);
    const size = (await Deno.stat(path)).size;
    return new RunLogWriter(path, version, size, what);
  }

  /** Bytes in the file (everything written so far). */
  get size(): number {
    return this.#size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Called after each successful append with where the records went (indexes use it). */
  onAppend(fn: AppendListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Appends records in one write; synchronous so that ordering with the stream is exact. */
  appendSync(records: LogRecord[]): void {
    if (this.#closed) throw new RunLogWriteError(false, `${this.what} is closed`);
    if (records.length === 0) return;
    const overhead = this.version >= 2 ? 12 : 4;
    const bytes = frameRecords(records, this.version, this.#frames);
    const start = this.#size;
    try {
      this.#file ??= Deno.openSync(this.path, { append: true });
      writeAll(this.#file, bytes);
    } catch (e) {
      // Leave the file ending on a whole frame; cutting back needs no free space.
      try {
        this.#file?.truncateSync(start);
      } catch { /* the next reader treats the rest as a torn tail */ }
      this.suspend();
      throw describeWriteError(e, this.what);
    }
    this.#size += bytes.length;
    if (this.#listeners.size) {
      const view = new DataView(bytes.buffer);
      const placed: Placed[] = [];
      let off = 0;
      for (const record of records) {
        const len = view.getUint32(off, true) + overhead;
        placed.push({ record, offset: start + off, end: start + off + len });
        off += len;
      }
      for (const fn of this.#listeners) fn(placed);
    }
  }

  /**
   * Makes everything appended so far durable (fdatasync), so that a checkpoint written next
   * never points past what the disk holds. Best effort, like close(): a filesystem without
   * fsync is not an error (a checkpoint beyond the log's end is ignored when read).
   */
  async sync(): Promise<void> {
    if (this.#closed) return; // close() synced
    try {
      if (this.#file) return await this.#file.syncData();
      const file = await Deno.open(this.path, { read: true });
      try {
        await file.syncData();
      } finally {
        file.close();
      }
    } catch { /* best effort */ }
  }

  /** Releases the descriptor; the next append opens it again. */
  suspend(): void {
    const f = this.#file;
    this.#file = undefined;
    try {
      f?.close();
    } catch { /* already closed */ }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#file?.syncDataSync();
    } catch { /* best effort on filesystems without fsync */ }
    this.suspend();
  }
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A byte range of a log that held no readable record. */
export interface DamagedRange {
  offset: number;
  length: number;
}

/** What a scan of a log found besides records. */
export interface ScanReport {
  /** Damaged ranges, skipped; the records after each are still read. */
  damage: DamagedRange[];
  /** Offset of a partial final frame (a crash mid-write), if the file ends in one. */
  tornAt?: number;
  /** End of the last whole record. */
  validEnd: number;
}

export interface LogHeaderInfo {
  header: HeaderRecord;
  version: number;
  /** Offset of the first body record. */
  bodyStart: number;
}

type FrameResult =
  | { kind: "ok"; record: unknown; next: number }
  | { kind: "need" }
  | { kind: "bad" }
  | { kind: "short" };

function isRecordLike(x: unknown): boolean {
  return typeof x === "object" && x !== null && typeof (x as { type?: unknown }).type === "string";
}

/**
 * The frame at buf[p] (file offset base + p). `fileEnd` is the file's size: a frame that
 * would run past it is "short"; one that only runs past the bytes at hand is "need".
 */
function frameAt(
  buf: Uint8Array,
  view: DataView,
  p: number,
  base: number,
  fileEnd: number,
  version: number,
): FrameResult {
  const head = version >= 2 ? 8 : 4;
  const tail = version >= 2 ? 4 : 0;
  if (base + p + head > fileEnd) return { kind: "short" };
  if (p + head > buf.length) return { kind: "need" };
  const len = view.getUint32(p, true);
  if (version >= 2 && maskedCrc32c(buf.subarray(p, p + 4)) !== view.getUint32(p + 4, true)) {
    return { kind: "bad" };
  }
  if (len > MAX_RECORD_BYTES || (version < 2 && len === 0)) return { kind: "bad" };
  const total = head + len + tail;
  if (base + p + total > fileEnd) return { kind: "short" };
  if (p + total > buf.length) return { kind: "need" };
  const payload = buf.subarray(p + head, p + head + len);
  if (version >= 2 && maskedCrc32c(payload) !== view.getUint32(p + head + len, true)) {
    return { kind: "bad" };
  }
  // Version 1 has no checksum: accept a payload that decodes to something record-shaped.
  if (version < 2 && payload[0] !== 0xde && (payload[0] & 0xf0) !== 0x80) return { kind: "bad" };
  let record: unknown;
  try {
    record = decodeRecord(payload);
  } catch {
    return { kind: "bad" };
  }
  if (!isRecordLike(record)) return { kind: "bad" };
  return { kind: "ok", record, next: p + total };
}

/** A source of bytes by position: a whole buffer, or a file read in chunks. */
interface ByteSource {
  size: number;
  /** Bytes [offset, offset + length), fewer at the end of the source. */
  read(offset: number, length: number): Promise<Uint8Array> | Uint8Array;
}

const CHUNK = 1 << 20;

interface Frame {
  record: unknown;
  offset: number;
  end: number;
}

/**
 * Frames from `from` to `end` (file offsets; `from` a frame start), skipping damage, fed bytes
 * by the caller: `next()` answers a frame, "need" (call `feed` with the bytes from
 * `wantFrom()`), or "done". The report is filled as the scan goes.
 */
class FrameScanner {
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  #spare?: Uint8Array<ArrayBuffer>;
  #view = new DataView(this.#buf.buffer);
  #base: number;
  #p = 0;
  #damageStart = -1;
  #tentativeTorn = false;

  constructor(
    readonly version: number,
    from: number,
    readonly end: number,
    readonly report: ScanReport,
    readonly chunk = CHUNK,
  ) {
    this.#base = from;
    report.validEnd = from;
  }

  /** Offset of the first byte the scanner does not hold yet. */
  wantFrom(): number {
    return this.#base + this.#buf.length;
  }

  /** Bytes worth reading next: a chunk, or a whole declared frame. */
  wantLength(): number {
    const rest = this.#buf.length - this.#p;
    const len = rest >= 4 ? this.#view.getUint32(this.#p, true) : 0;
    const frame = len <= MAX_RECORD_BYTES ? len + 16 - rest : 0;
    return Math.min(this.end - this.wantFrom(), Math.max(this.chunk, frame));
  }

  feed(bytes: Uint8Array): void {
    const keep = this.#buf.subarray(this.#p);
    const size = keep.length + bytes.length;
    // Two buffers in turn, not a fresh one per chunk (an export reads hundreds of MB: 15%
    // faster so). Nothing keeps a view of the old one: every frame is decoded (copied) as it
    // is found.
    const spare = this.#spare;
    const next = spare && spare.byteLength >= size
      ? new Uint8Array(spare.buffer, 0, size)
      : new Uint8Array(new ArrayBuffer(Math.max(size, 2 * this.chunk)), 0, size);
    next.set(keep);
    next.set(bytes, keep.length);
    this.#spare = this.#buf;
    this.#base += this.#p;
    this.#p = 0;
    this.#buf = next;
    this.#view = new DataView(next.buffer, 0, size);
  }

  next(): Frame | "need" | "done" {
    while (this.#base + this.#p < this.end) {
      const p = this.#p;
      const f = frameAt(this.#buf, this.#view, p, this.#base, this.end, this.version);
      if (f.kind === "need") return "need";
      if (f.kind === "ok") {
        const offset = this.#base + p;
        if (this.#damageStart >= 0) {
          this.report.damage.push({
            offset: this.#damageStart,
            length: offset - this.#damageStart,
          });
          this.#damageStart = -1;
          this.#tentativeTorn = false;
        }
        this.#p = f.next;
        this.report.validEnd = this.#base + f.next;
        return { record: f.record, offset, end: this.#base + f.next };
      }
      // bad or short: search forward one byte at a time for the next whole frame.
      if (this.#damageStart < 0) {
        this.#damageStart = this.#base + p;
        this.#tentativeTorn = f.kind === "short";
      }
      this.#p++;
    }
    if (this.#damageStart >= 0) {
      if (this.#tentativeTorn) this.report.tornAt = this.#damageStart;
      else {
        this.report.damage.push({
          offset: this.#damageStart,
          length: this.end - this.#damageStart,
        });
      }
      this.#damageStart = -1;
    }
    return "done";
  }
}

async function* framesOf(
  src: ByteSource,
  version: number,
  from: number,
  to: number,
  report: ScanReport,
  chunk = CHUNK,
): AsyncGenerator<Frame> {
  const s = new FrameScanner(version, from, Math.min(to, src.size), report, chunk);
  while (true) {
    const f = s.next();
    if (f === "done") return;
    if (f === "need") {
      const more = await src.read(s.wantFrom(), s.wantLength());
      if (more.length === 0) return; // the file shrank under us
      s.feed(more);
    } else yield f;
  }
}

function fileSource(file: Deno.FsFile, size: number): ByteSource {
  // One read buffer for the whole scan: what a read returns is copied (FrameScanner.feed)
  // before the next read.
  let buffer = new Uint8Array(0);
  return {
    size,
    async read(offset, length) {
      const want = Math.max(0, Math.min(length, size - offset));
      if (buffer.byteLength < want) buffer = new Uint8Array(want);
      const out = buffer.subarray(0, want);
      await file.seek(offset, Deno.SeekMode.Start);
      let got = 0;
      while (got < out.length) {
        const n = await file.read(out.subarray(got));
        if (n === null) break;
        got += n;
      }
      return out.subarray(0, got);
    },
  };
}

function versionOf(bytes: Uint8Array): number {
  if (bytes.length < RUNLOG_MAGIC.length) return 1;
  for (let i = 0; i < RUNLOG_MAGIC.length; i++) if (bytes[i] !== RUNLOG_MAGIC[i]) return 1;
  return 2;
}

function checkHeader(record: unknown, where: string): HeaderRecord {
  const h = record as HeaderRecord | undefined;
  if (!h || h.type !== "header" || h.format !== "lab-runlog") {
    throw new Error(`${where} is not a lab run log (no lab-runlog header)`);
  }
  return h;
}

async function headerOf(src: ByteSource, where: string): Promise<LogHeaderInfo> {
  const first = await src.read(0, RUNLOG_MAGIC.length);
  const version = versionOf(first);
  const start = version >= 2 ? RUNLOG_MAGIC.length : 0;
  const report: ScanReport = { damage: [], validEnd: 0 };
  // A small first read: startup reads only headers, of every run.
  for await (const f of framesOf(src, version, start, src.size, report, 16384)) {
    // The header must be the first frame; damage before it means this is no run log.
    if (report.damage.length) break;
    return { header: checkHeader(f.record, where), version, bodyStart: f.end };
  }
  throw new Error(`${where} is not a lab run log (no lab-runlog header)`);
}

/** Reads only a log's header (and framing version). */
export async function readRunLogHeader(path: string): Promise<LogHeaderInfo> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    return await headerOf(fileSource(file, size), "the file");
  } finally {
    file.close();
  }
}

/** A record with the byte range of its frame. */
export interface StoredRecord<R extends LogRecord = BodyRecord> {
  record: R;
  offset: number;
  end: number;
}

/**
 * Reads a log's body records in order from `from` (a frame start; default the first body
 * record) to `to`, in chunks: memory stays bounded whatever the file's size. `report` collects
 * damage and a torn tail. A block of snapshots (`snapshots`) comes as the snapshots it holds,
 * each with the block's frame range, unless `blocks` is set (readers that take columns).
 */
export function iterateRunLog(
  path: string,
  opts?: { from?: number; to?: number; report?: ScanReport; blocks?: false },
): AsyncGenerator<StoredRecord>;
export function iterateRunLog(
  path: string,
  opts: { from?: number; to?: number; report?: ScanReport; blocks: true },
): AsyncGenerator<StoredRecord<LogRecord>>;
export async function* iterateRunLog(
  path: string,
  opts: { from?: number; to?: number; report?: ScanReport; blocks?: boolean } = {},
): AsyncGenerator<StoredRecord<LogRecord>> {
  const file = await Deno.open(path, { read: true });
  try {
    const size = (await file.stat()).size;
    const src = fileSource(file, size);
    const info = await headerOf(src, "the file");
    const report = opts.report ?? { damage: [], validEnd: 0 };
    const from = Math.max(opts.from ?? info.bodyStart, info.bodyStart);
    for await (const f of framesOf(src, info.version, from, opts.to ?? size, report)) {
      const stored = f as StoredRecord<LogRecord>;
      const r = stored.record;
      if (r.type !== "snapshots" || opts.blocks) yield stored;
      else {
        for (let i = 0; i < r.steps.length; i++) {
          yield { record: blockRow(r, i), offset: stored.offset, end: stored.end };
        }
      }
    }
  } finally {
    file.close();
  }
}

export interface RunLogContents {
  header: HeaderRecord;
  records: BodyRecord[];
  /** True if the file ended in a partial record (a crash mid-write). */
  truncated: boolean;
  /** Length of the intact prefix: truncate to this before appending after a crash. */
  validBytes: number;
  /** Damaged ranges that were skipped. */
  damage: DamagedRange[];
  version: number;
}

/** Parses a whole log held in memory (small logs, tests, imports). */
export function parseRunLog(bytes: Uint8Array, path = "(log)"): RunLogContents {
  const version = versionOf(bytes);
  const report: ScanReport = { damage: [], validEnd: 0 };
  const records: unknown[] = [];
  const from = version >= 2 ? RUNLOG_MAGIC.length : 0;
  const s = new FrameScanner(version, from, bytes.length, report);
  s.feed(bytes.subarray(from));
  for (let f = s.next(); f !== "done" && f !== "need"; f = s.next()) records.push(f.record);
  const header = checkHeader(records[0], path);
  return {
    header,
    records: expandSnapshots(records.slice(1) as LogRecord[]),
    truncated: report.tornAt !== undefined,
    validBytes: report.validEnd,
    damage: report.damage,
    version,
  };
}

export async function readRunLog(path: string): Promise<RunLogContents> {
  return parseRunLog(await Deno.readFile(path), path);
}
