/**
 * `deno task bench --store`: the run store at growing sizes, measured on a real server process
 * over HTTP and the stream only (so the same script measures an older checkout, with
 * --server=OTHER/server/main.ts). Reported, never asserted:
 *  - write rate: steps/s of a run with every=1 as a fraction of the same run with every=1000;
 *  - history reply p50/p95 on the biggest run (full range and random zooms, 1000 buckets);
 *  - CSV export rate and the server's peak RSS during the export (on the server that computed
 *    the runs, and after a restart on one that only stores them);
 *  - startup time (until the port listens) with everything stored.
 * Flags: --sizes=100000,1000000,3000000 (snapshots of the every=1 runs)  --server=PATH  --json
 */
import { parseCliArgs } from "../server/cli/args.ts";
import { streamUrl, wirePackr } from "../client/protocol.ts";

const { flags } = parseCliArgs(Deno.args);
const json = flags.has("json");
const sizes = String(flags.get("sizes") ?? "100000,1000000,3000000").split(",").map(Number);
const serverMain = String(
  flags.get("server") ?? new URL("../server/main.ts", import.meta.url).pathname,
);
const spec = (steps: number, every: number) => ({
  experiment: "shape-matters",
  params: { d: 20, n: 10 },
  replicas: 4,
  steps,
  every,
  backend: "wasm",
});

interface Server {
  url: string;
  pid: number;
  child: Deno.ChildProcess;
  startMs: number;
}

/**
 * The V8 flags the server's own checkout serves with (its deno.json `serve` task), so the bench
 * measures the server as `deno task serve` runs it.
 */
function serveV8Flags(): string[] {
  try {
    const config = JSON.parse(
      Deno.readTextFileSync(new URL("../deno.json", `file://${serverMain}`)),
    );
    return String(config.tasks?.serve ?? "").match(/--v8-flags=\S+/g) ?? [];
  } catch {
    return [];
  }
}

async function startServer(dataDir: string): Promise<Server> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...serveV8Flags(), serverMain, "--port=0", `--data=${dataDir}`],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) text += dec.decode(chunk);
  };
  pump(child.stdout);
  pump(child.stderr);
  while (!/lab listening on (http:\/\/\S+)/.test(text)) {
    if (performance.now() - t0 > 1_800_000) throw new Error(`no start: ${text}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const startMs = performance.now() - t0;
  return { url: text.match(/lab listening on (http:\/\/\S+)/)![1], pid: child.pid, child, startMs };
}

async function stop(s: Server): Promise<void> {
  s.child.kill("SIGTERM");
  await s.child.status;
}

function rss(pid: number, field = "VmRSS"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(new RegExp(`${field}:\\s+(\\d+) kB`))?.[1]) / 1024;
}

interface Summary {
  id: string;
  status: string;
  started?: string;
  ended?: string;
  step: number;
}

async function runToEnd(url: string, body: unknown): Promise<Summary> {
  const res = await fetch(`${url}/api/runs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const { id, error } = await res.json();
  if (!id) throw new Error(`submit failed: ${error}`);
  while (true) {
    await new Promise((r) => setTimeout(r, 500));
    const d = await (await fetch(`${url}/api/runs/${id}`)).json();
    if (!["queued", "running"].includes(d.status)) return d;
  }
}

const rate = (s: Summary) => s.step / ((Date.parse(s.ended!) - Date.parse(s.started!)) / 1000);

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    n += e.isDirectory ? dirBytes(p) : Deno.statSync(p).size;
  }
  return n;
}

async function historyTimes(url: string, run: string, lastStep: number, n: number) {
  const ws = new WebSocket(streamUrl(url));
  ws.binaryType = "arraybuffer";
  await new Promise((r, j) => (ws.onopen = r, ws.onerror = j));
  const waiting = new Map<number, (m: unknown) => void>();
  ws.onmessage = (e) => {
    const m = wirePackr.unpack(new Uint8Array(e.data)) as { type: string; req?: number };
    if (m.req !== undefined && waiting.has(m.req)) waiting.get(m.req)!(m);
  };
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    // First the whole run, then random zooms of 1/10 … 1/10000 of it.
    const width = i === 0 ? lastStep : Math.max(10, Math.floor(lastStep / 10 ** (1 + (i % 4))));
    const from = i === 0 ? 0 : Math.floor(Math.random() * (lastStep - width));
    const t0 = performance.now();
    const reply = new Promise((r) => waiting.set(i, r));
    ws.send(JSON.stringify({
      type: "history",
      req: i,
      run,
      from_step: from,
      to_step: from + width,
      buckets: 1000,
    }));
    const m = await reply as { type: string; message?: string };
    if (m.type !== "history") throw new Error(`history failed: ${m.message}`);
    times.push(performance.now() - t0);
  }
  ws.close();
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(n * 0.5)], p95: times[Math.floor(n * 0.95)] };
}

function out(row: Record<string, unknown>): void {
  if (json) console.log(JSON.stringify(row));
  else {
    console.log(
      Object.entries(row).map(([k, v]) =>
        `${k}=${typeof v === "number" ? Number(v.toPrecision(4)) : v}`
      ).join("  "),
    );
  }
}

/** Exports a run's CSV: its bytes and seconds, and the server's RSS before and at its peak. */
async function exportCsv(server: Server, id: string) {
  const idleRss = rss(server.pid);
  const t0 = performance.now();
  const res = await fetch(`${server.url}/api/runs/${id}/metrics.csv`);
  let bytes = 0, peak = idleRss;
  let polls = 0;
  for await (const chunk of res.body!) {
    bytes += chunk.length;
    if (++polls % 64 === 0) peak = Math.max(peak, rss(server.pid));
  }
  const csvS = (performance.now() - t0) / 1000;
  return { idleRss, peak: Math.max(peak, rss(server.pid)), bytes, csvS };
}

export async function benchStore(): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "lab-bench-store-" });
  try {
    let server = await startServer(dataDir);
    let biggest: Summary | undefined;
    for (const n of sizes) {
      const coarse = await runToEnd(server.url, spec(n, 1000));
      const fine = await runToEnd(server.url, spec(n, 1));
      if (fine.status !== "finished") throw new Error(`every=1 run ${fine.status}`);
      biggest = fine;
      const { idleRss, peak, bytes, csvS } = await exportCsv(server, fine.id);
      const hist = await historyTimes(server.url, fine.id, fine.step, 40);
      out({
        snapshots: n + 1,
        every1_steps_per_s: rate(fine),
        every1000_steps_per_s: rate(coarse),
        write_fraction: rate(fine) / rate(coarse),
        history_p50_ms: hist.p50,
        history_p95_ms: hist.p95,
        csv_mb_per_s: bytes / 2 ** 20 / csvS,
        csv_mb: bytes / 2 ** 20,
        rss_before_export_mb: idleRss,
        rss_peak_export_mb: peak,
        stored_mb: dirBytes(dataDir) / 2 ** 20,
      });
    }
    await stop(server);
    // Startup with everything stored: the first start after a restart, then one more.
    for (const attempt of [1, 2]) {
      server = await startServer(dataDir);
      const started = rss(server.pid);
      // The biggest run exported by a server that did not compute it (its memory is the
      // store's, not what computing left behind).
      const exported = biggest ? await exportCsv(server, biggest.id) : undefined;
      out({
        startup_attempt: attempt,
        stored_mb: dirBytes(dataDir) / 2 ** 20,
        startup_ms: server.startMs,
        rss_after_start_mb: started,
        biggest: biggest?.id,
        rss_peak_export_biggest_mb: exported?.peak,
      });
      await stop(server);
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await benchStore();
