/**
 * The run store: one append-only log per run under `<data>/runs/` (the source of truth) and,
 * beside them in `<data>/runs/derived/`, files rebuilt from the logs whenever they are missing
 * or stale: a catalogue entry per run (its summary, so startup reads no log body), a snapshot
 * index and a min/max/last pyramid (run_index.ts). Every read streams from the log or reads
 * the derived files; nothing materialises a whole run. Used by the server's run manager and
 * by `lab run --out` (docs/storage.md).
 */
import { join } from "node:path";
import {
  type BodyRecord,
  type EventRecord,
  expandSnapshots,
  type HeaderRecord,
  lastSeqOf,
  type LogRecord,
  type RunStatus,
  type SnapshotRecord,
} from "./records.ts";
import {
  type DamagedRange,
  describeWriteError,
  iterateRunLog,
  type Placed,
  readRunLogHeader,
  RUNLOG_SUFFIX,
  RunLogWriter,
  type ScanReport,
  type StoredRecord,
} from "./runlog.ts";
import {
  type HistoryQuery,
  removeIndex,
  RunIndexBuilder,
  RunIndexReader,
  snapsBytes,
} from "./run_index.ts";
import { BucketAccumulator, type Decimated, snapshotPiece } from "./history.ts";
import { applyAnnotation, labelsOfSpec, type RunLabels } from "./annotations.ts";

export const TERMINAL: ReadonlySet<RunStatus> = new Set([
  "finished",
  "failed",
  "stopped",
  "interrupted",
]);

/** Events kept per run for the detail view (the log has them all). */
export const MAX_EVENTS_KEPT = 100;
/** 2: the state carries the run's labels (name, tags, note). */
const CATALOGUE_VERSION = 2;

/** What a run's records add up to: everything a listing or detail view needs. */
export interface RunState {
  status: RunStatus;
  step: number;
  lastSeq: number;
  started?: number;
  ended?: number;
  error?: string;
  /** The most recent events (bounded). */
  events: EventRecord[];
  eventCount: number;
  snapshots: number;
  /** Records lost to damage, counted from gaps in seq. */
  missing: number;
  /** Seq of the latest status record (absent from catalogue entries written before it). */
  statusSeq?: number;
  /** The latest status is a graceful shutdown's `interrupted`: the next start resumes it. */
  resumeOnStart?: boolean;
  damage: DamagedRange[];
  /** Name, tags and note: the spec's, then the latest of each annotation record. */
  labels: RunLabels;
}

export function newRunState(header: HeaderRecord): RunState {
  return {
    labels: labelsOfSpec(header.spec),
    status: "queued",
    step: 0,
    lastSeq: 0,
    events: [],
    eventCount: 0,
    snapshots: 0,
    missing: 0,
    damage: [],
  };
}

/** Folds records, in seq order, into a run's state. */
export function foldRecords(s: RunState, records: LogRecord[]): void {
  for (const r of records) {
    if (r.seq > s.lastSeq + 1) s.missing += r.seq - s.lastSeq - 1;
    s.lastSeq = Math.max(s.lastSeq, lastSeqOf(r));
    if (r.type === "snapshot") {
      s.step = r.step;
      s.snapshots++;
    } else if (r.type === "snapshots") {
      s.step = r.steps[r.steps.length - 1];
      s.snapshots += r.steps.length;
    } else if (r.type === "event") {
      s.events.push(r);
      s.eventCount++;
      if (s.events.length > MAX_EVENTS_KEPT) s.events.shift();
    } else if (r.type === "status") {
      s.status = r.status;
      s.statusSeq = r.seq;
      s.resumeOnStart = r.resume_on_start === true;
      if (r.status === "running") s.started = r.time;
      if (TERMINAL.has(r.status)) s.ended = r.time;
      if (r.error) s.error = r.error;
    } else if (r.type === "annotation") applyAnnotation(s.labels, r);
  }
}

/** Damage as reported to users: how many records and where (byte ranges of the log). */
export interface DamageReport {
  records: number;
  ranges: DamagedRange[];
}

export function damageReport(s: RunState): DamageReport | undefined {
  if (s.damage.length === 0 && s.missing === 0) return undefined;
  return { records: Math.max(s.missing, s.damage.length), ranges: s.damage };
}

/**
 * Whether a run that has no ending status lost it to damage: its records reach the spec's
 * final step and its log ends in a damaged frame (whole, with a bad checksum; not a torn one
 * from a crash mid-write). After the final snapshot a run writes only that step's events and
 * frames and its ending status, so such a run computed to the end: it is taken as `finished`
 * (the damage report still says which bytes were lost), never recomputed or marked
 * `interrupted`.
 */
export function endedInDamage(run: StoredRun, logBytes: number): boolean {
  const s = run.state;
  const last = s.damage[s.damage.length - 1];
  return !TERMINAL.has(s.status) && run.tornAt === undefined && s.snapshots > 0 &&
    s.step === run.header.spec.steps && last !== undefined &&
    last.offset + last.length === logBytes;
}

/** A run as the store knows it: where its log is, and its derived state. */
export interface StoredRun {
  id: string;
  header: HeaderRecord;
  path: string;
  state: RunState;
  /** The derived files are whole (up to the last append); reads may use them. */
  indexed: boolean;
  /** Maintains the derived files while the run is written. */
  index?: RunIndexBuilder;
  /** Bytes of a partial final frame found on load (a crash mid-write). */
  tornAt?: number;
}

export class RunStore {
  private constructor(
    readonly runsDir: string,
    /** Where derived files go; undefined when nowhere is writable (reads then scan the log). */
    readonly derivedDir: string | undefined,
    readonly readOnly: boolean,
  ) {}

  /** Opens `<dataDir>/runs`, finding out whether it can be written. */
  static open(dataDir: string): Promise<RunStore> {
    return RunStore.openRunsDir(join(dataDir, "runs"));
  }

  /** Opens a directory of run logs (`lab run --out=DIR` writes into one). */
  static async openRunsDir(runsDir: string): Promise<RunStore> {
    try {
      await Deno.mkdir(runsDir, { recursive: true });
    } catch (e) {
      // A read-only data directory that already holds runs is still served.
      if (!(await isDir(runsDir))) throw describeWriteError(e, "the data directory");
    }
    const readOnly = !(await canWrite(runsDir));
    let derivedDir: string | undefined = join(runsDir, "derived");
    if (readOnly) {
      // Derived files are a cache: build them elsewhere for this process.
      try {
        derivedDir = await Deno.makeTempDir({ prefix: "lab-derived-" });
      } catch {
        derivedDir = undefined;
      }
    } else await Deno.mkdir(derivedDir, { recursive: true });
    return new RunStore(runsDir, derivedDir, readOnly);
  }

  logPath(id: string): string {
    return join(this.runsDir, id + RUNLOG_SUFFIX);
  }

  /** Paths of the run logs in the store, by name. */
  async logPaths(): Promise<string[]> {
    const names: string[] = [];
    for await (const f of Deno.readDir(this.runsDir)) {
      if (f.isFile && f.name.endsWith(RUNLOG_SUFFIX)) names.push(f.name);
    }
    return names.sort().map((n) => join(this.runsDir, n));
  }

  /**
   * Loads a run from its catalogue entry when that matches the log's size, else by reading the
   * log once and rebuilding the derived files.
   */
  async load(path: string): Promise<StoredRun> {
    const { header } = await readRunLogHeader(path);
    const stat = await Deno.stat(path);
    const cached = this.derivedDir ? await this.#readCatalogue(header.id, stat) : undefined;
    if (cached) {
      return { id: header.id, header, path, state: cached, indexed: true };
    }
    return await this.#rebuild(header, path);
  }

  /** The entry if it describes the log as it is: same size and modification time. */
  async #readCatalogue(id: string, log: Deno.FileInfo): Promise<RunState | undefined> {
    try {
      const text = await Deno.readTextFile(join(this.derivedDir!, `${id}.json`));
      const c = JSON.parse(text);
      if (
        c.catalogue !== CATALOGUE_VERSION || c.log_bytes !== log.size ||
        c.log_mtime !== (log.mtime?.getTime() ?? null)
      ) return undefined;
      const state = c.state as RunState;
      const snaps = await Deno.stat(join(this.derivedDir!, `${id}.snaps`)).catch(() => null);
      if ((snaps?.size ?? 0) !== snapsBytes(state.snapshots)) return undefined;
      return state;
    } catch {
      return undefined;
    }
  }

  async #rebuild(header: HeaderRecord, path: string): Promise<StoredRun> {
    const run = await this.#scan(header, path);
    if (TERMINAL.has(run.state.status)) await this.finish(run);
    return run;
  }

  /**
   * Reads a log once: its state, its derived index (rebuilt) and a torn tail. `each` sees
   * every readable record in order.
   */
  async #scan(
    header: HeaderRecord,
    path: string,
    each?: (r: BodyRecord) => void,
  ): Promise<StoredRun> {
    const state = newRunState(header);
    const index = this.derivedDir ? RunIndexBuilder.reset(this.derivedDir, header) : undefined;
    const report: ScanReport = { damage: [], validEnd: 0 };
    let batch: Placed[] = [];
    const flush = () => {
      index?.add(batch);
      foldRecords(state, batch.map((p) => p.record));
      batch = [];
    };
    // Blocks of snapshots stay blocks: the index and the state take them whole.
    for await (const r of iterateRunLog(path, { report, blocks: true })) {
      if (each) { for (const one of expandSnapshots([r.record])) each(one); }
      batch.push(r);
      if (batch.length >= 4096) flush();
    }
    flush();
    state.damage = report.damage;
    return {
      id: header.id,
      header,
      path,
      state,
      index,
      indexed: index !== undefined && !index.broken,
      tornAt: report.tornAt,
    };
  }

  /**
   * Prepares an ended or interrupted run to be written again (a resume): reads its log once,
   * handing `each` every record, rebuilds its state and index (kept up to date by the next
   * writer from reopen()), and cuts off a torn tail, the one part of a log ever cut.
   */
  async reopenForResume(run: StoredRun, each: (r: BodyRecord) => void): Promise<void> {
    const fresh = await this.#scan(run.header, run.path, each);
    if (fresh.tornAt !== undefined) {
      await Deno.truncate(run.path, fresh.tornAt);
      fresh.tornAt = undefined;
    }
    run.state = fresh.state;
    run.index = fresh.index;
    run.indexed = fresh.indexed;
    run.tornAt = undefined;
  }

  /**
   * Appends records to a run that has no writer open (an annotation on an ended run): v2
   * framing through the run's own writer, then the catalogue entry is written again.
   */
  async appendEnded(run: StoredRun, records: BodyRecord[]): Promise<void> {
    const w = await this.reopen(run);
    try {
      w.appendSync(records);
    } finally {
      w.close();
    }
    foldRecords(run.state, records);
    await this.finish(run);
  }

  /**
   * Stores a whole run log made elsewhere (an import) with the store's writer and framing, its
   * derived files and catalogue entry. Throws Deno.errors.AlreadyExists for a known id.
   */
  async write(header: HeaderRecord, records: BodyRecord[]): Promise<StoredRun> {
    const { run, writer } = await this.create(header);
    try {
      writer.appendSync(records);
    } finally {
      writer.close();
    }
    foldRecords(run.state, records);
    await this.finish(run);
    return run;
  }

  /**
   * After a run's last append: writes its catalogue entry (a failure only costs a rebuild on
   * the next start) and drops the index builder.
   */
  async finish(run: StoredRun): Promise<void> {
    run.index = undefined;
    if (!this.derivedDir || !run.indexed) return;
    try {
      const log = await Deno.stat(run.path);
      const tmp = join(this.derivedDir, `${run.id}.json.tmp`);
      await Deno.writeTextFile(
        tmp,
        JSON.stringify({
          catalogue: CATALOGUE_VERSION,
          log_bytes: log.size,
          log_mtime: log.mtime?.getTime() ?? null,
          state: run.state,
        }),
      );
      await Deno.rename(tmp, join(this.derivedDir, `${run.id}.json`));
    } catch { /* rebuilt from the log on the next start */ }
  }

  /** Creates a run's log (header only) with its index maintained on every append. */
  async create(header: HeaderRecord): Promise<{ run: StoredRun; writer: RunLogWriter }> {
    if (this.readOnly) {
      throw describeWriteError(new Deno.errors.PermissionDenied(), `run ${header.id}`);
    }
    const path = this.logPath(header.id);
    const writer = await RunLogWriter.create(path, header);
    const run: StoredRun = {
      id: header.id,
      header,
      path,
      state: newRunState(header),
      indexed: this.derivedDir !== undefined,
    };
    this.#attach(
      run,
      writer,
      this.derivedDir ? RunIndexBuilder.reset(this.derivedDir, header) : undefined,
    );
    return { run, writer };
  }

  /** Opens a loaded run's log for appending (e.g. its `interrupted` mark), index kept. */
  async reopen(run: StoredRun): Promise<RunLogWriter> {
    const writer = await RunLogWriter.append(run.path, `run ${run.id}`);
    this.#attach(run, writer, run.index);
    return writer;
  }

  #attach(run: StoredRun, writer: RunLogWriter, index: RunIndexBuilder | undefined): void {
    run.index = index;
    // The state is folded by whoever delivers records (the recorder's listeners), so that a
    // status the log could not take (a full disk) still reaches the listing.
    writer.onAppend((placed) => {
      index?.add(placed);
      if (index?.broken) run.indexed = false;
    });
  }

  #reader(run: StoredRun): RunIndexReader | undefined {
    if (!this.derivedDir || !run.indexed) return undefined;
    const snapshots = run.index?.snapshots ?? run.state.snapshots;
    return new RunIndexReader(this.derivedDir, run.header, snapshots);
  }

  /**
   * Records of a run in order, streamed from the log. Every read of the log goes through
   * here, so that damage it meets reaches the run's report (#noteDamage).
   */
  iterate(run: StoredRun, from?: number, blocks?: false): AsyncGenerator<StoredRecord>;
  iterate(run: StoredRun, from: number | undefined, blocks: true): AsyncGenerator<
    StoredRecord<LogRecord>
  >;
  async *iterate(
    run: StoredRun,
    from?: number,
    blocks = false,
  ): AsyncGenerator<StoredRecord<LogRecord>> {
    const report: ScanReport = { damage: [], validEnd: 0 };
    try {
      // Blocks of snapshots as blocks for readers that take columns (an export), else one by one.
      if (blocks) yield* iterateRunLog(run.path, { from, report, blocks: true });
      else yield* iterateRunLog(run.path, { from, report });
    } finally {
      await this.#noteDamage(run, report);
    }
  }

  /**
   * Damage a read met that the run's report lacks: the log was damaged in place after it was
   * scanned (its catalogue entry is trusted while the log's size and mtime are unchanged, and a
   * flipped byte changes neither if the mtime is put back). It joins the report at once (the
   * summary, the dashboard's badge) and, for an ended run, its catalogue entry, so that a
   * restart that trusts the entry still reports it.
   */
  async #noteDamage(run: StoredRun, report: ScanReport): Promise<void> {
    const known = new Set(run.state.damage.map((d) => d.offset));
    const fresh = report.damage.filter((d) => !known.has(d.offset));
    if (fresh.length === 0) return;
    run.state.damage = [...run.state.damage, ...fresh].sort((a, b) => a.offset - b.offset);
    console.error(
      `run ${run.id}: ${fresh.length} damaged record(s) in its log found by a read; skipped`,
    );
    if (TERMINAL.has(run.state.status) && !run.index) await this.finish(run);
  }

  /** Up to `max` records with seq > `after`, read from the log at the index's offset. */
  async readAfter(run: StoredRun, after: number, max: number): Promise<BodyRecord[]> {
    const from = await this.#guard(run, (r) => r.offsetBefore(after), undefined);
    const out: BodyRecord[] = [];
    if (max <= 0) return out;
    for await (const { record } of this.iterate(run, from)) {
      if (record.seq <= after) continue;
      out.push(record);
      if (out.length >= max) break;
    }
    return out;
  }

  /** The run's last snapshot, read from the log. */
  async latest(run: StoredRun): Promise<SnapshotRecord | undefined> {
    const at = await this.#guard(run, (r) => r.lastSnapshotOffset(), undefined);
    let last: SnapshotRecord | undefined;
    // From the last snapshot's frame (a block: its last row is the one) to the log's end.
    for await (const { record } of this.iterate(run, at)) {
      if (record.type === "snapshot") last = record;
    }
    return last;
  }

  /** History over a step range, from the pyramid (or, without an index, one scan). */
  async history(run: StoredRun, q: HistoryQuery): Promise<Decimated> {
    const read = (from?: number) => this.iterate(run, from);
    const raw = (fromOffset: number, fromSeq: number, count: number) =>
      snapshotsFrom(read, fromOffset, fromSeq, count);
    const reader = this.#reader(run);
    if (reader) {
      try {
        return await reader.history(q, raw);
      } catch (e) {
        this.#indexFailed(run, e);
      }
    }
    return await scanHistory(read, q);
  }

  async #guard<T>(
    run: StoredRun,
    fn: (r: RunIndexReader) => Promise<T>,
    fallback: T,
  ): Promise<T> {
    const reader = this.#reader(run);
    if (!reader) return fallback;
    try {
      return await fn(reader);
    } catch (e) {
      this.#indexFailed(run, e);
      return fallback;
    }
  }

  #indexFailed(run: StoredRun, e: unknown): void {
    // A missing or short index: serve from the log; the next start rebuilds it.
    console.error(`run ${run.id}: index unusable (${e instanceof Error ? e.message : e})`);
    run.indexed = false;
  }

  /** Deletes a run's log (throws if that fails, so the run stays listed), then its derived files. */
  async remove(run: StoredRun): Promise<void> {
    if (this.readOnly) {
      throw describeWriteError(new Deno.errors.PermissionDenied(), `run ${run.id}`);
    }
    try {
      await Deno.remove(run.path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw describeWriteError(e, `run ${run.id}`);
    }
    if (this.derivedDir) {
      removeIndex(this.derivedDir, run.id);
      await Deno.remove(join(this.derivedDir, `${run.id}.json`)).catch(() => {});
    }
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function canWrite(dir: string): Promise<boolean> {
  const probe = join(dir, `.write-probe-${Deno.pid}`);
  try {
    const f = await Deno.open(probe, { write: true, createNew: true });
    f.close();
    await Deno.remove(probe);
    return true;
  } catch {
    return false;
  }
}

/** A run's records from a frame start (RunStore.iterate). */
type ReadLog = (from?: number) => AsyncGenerator<{ record: BodyRecord }>;

async function* snapshotsFrom(
  read: ReadLog,
  from: number,
  fromSeq: number,
  count: number,
): AsyncGenerator<SnapshotRecord> {
  let n = 0;
  if (count <= 0) return;
  for await (const { record } of read(from)) {
    if (record.type !== "snapshot" || record.seq < fromSeq) continue;
    yield record;
    if (++n >= count) return;
  }
}

/** History without an index: two passes over the log (count, then fold), bounded memory. */
async function scanHistory(read: ReadLog, q: HistoryQuery): Promise<Decimated> {
  let first: number | undefined, last = 0;
  for await (const { record } of read()) {
    if (record.type === "snapshot") {
      first ??= record.step;
      last = record.step;
    }
  }
  const from = q.fromStep ?? first ?? 0;
  const to = q.toStep ?? last;
  let count = 0;
  for await (const { record } of read()) {
    if (record.type === "snapshot" && record.step >= from && record.step <= to) count++;
  }
  const nb = q.buckets === undefined ? count : Math.max(1, Math.min(q.buckets, count));
  const acc = new BucketAccumulator(from, to, Math.max(1, nb), nb >= count, q.metrics, q.replicas);
  for await (const { record } of read()) {
    if (record.type === "snapshot" && record.step >= from && record.step <= to) {
      acc.add(snapshotPiece(record));
    }
  }
  return acc.result();
}
