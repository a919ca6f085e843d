/**
 * Shared pieces for the server tests: an in-process lab on a free port with its own data
 * directory, small run specs, a raw stream client that records exactly what the server sent
 * (no client-side dedupe, so duplicates and gaps show), and polling helpers.
 */
import { type LabServer, type LabServerOptions, startLab } from "../server/api/server.ts";
import { type ServerMessage, streamProtocols, streamUrl, wirePackr } from "../client/protocol.ts";

export const ROOT = new URL("..", import.meta.url).pathname;

export interface TestLab extends LabServer {
  dataDir: string;
  close(): Promise<void>;
}

export async function startTestLab(opts: Partial<LabServerOptions> = {}): Promise<TestLab> {
  const dataDir = opts.dataDir ?? await Deno.makeTempDir({ prefix: "lab-test-" });
  const lab = await startLab({ port: 0, hostname: "127.0.0.1", dataDir, ...opts });
  return {
    ...lab,
    dataDir,
    async close() {
      await lab.shutdown();
      if (!opts.dataDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

export interface ServerProcess {
  url: string;
  child: Deno.ChildProcess;
  output: () => string;
}

/** The real `server/main.ts` in a child process on a free port, on `dataDir`. */
export async function startServerProcess(
  dataDir: string,
  args: string[] = [],
  launch: {
    /** A command the server runs under (e.g. prlimit and its options). */
    wrapper?: string[];
    /** Flags for `deno run` itself (e.g. V8 flags). */
    denoFlags?: string[];
  } = {},
): Promise<ServerProcess> {
  const command = [
    ...(launch.wrapper ?? []),
    Deno.execPath(),
    "run",
    "-A",
    ...(launch.denoFlags ?? []),
    `${ROOT}server/main.ts`,
    "--port=0",
    `--data=${dataDir}`,
    ...args,
  ];
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
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
  try {
    const url = await waitFor(
      () => text.match(/lab listening on (http:\/\/\S+)/)?.[1],
      `server start (output so far: ${text})`,
      30_000,
    );
    return { url, child, output: () => text };
  } catch (e) {
    // A server that never listened is not left behind by the test that started it.
    try {
      child.kill("SIGKILL");
    } catch { /* it has exited already */ }
    await child.status;
    throw e;
  }
}

/** A small, fast shape-matters run on the Wasm backend. */
export function smallSpec(overrides: Record<string, unknown> = {}, params = {}) {
  return {
    experiment: "shape-matters",
    params: { d: 20, n: 10, ...params },
    replicas: 4,
    steps: 20_000,
    every: 100,
    backend: "wasm",
    ...overrides,
  };
}

export async function submit(base: string, spec: unknown, token?: string): Promise<string> {
  const res = await fetch(`${base}/api/runs`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(spec),
  });
  const body = await res.json();
  if (res.status !== 201) throw new Error(`submit: ${res.status} ${JSON.stringify(body)}`);
  return body.id;
}

/**
 * Polls until `fn` holds. The default bound is generous on purpose: it only decides how long a
 * failing test takes to say so, and a loaded 2-core CI machine can be many times slower.
 */
export async function waitFor<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 60_000,
  everyMs = 20,
): Promise<T> {
  const t0 = Date.now();
  while (true) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const TERMINAL = new Set(["finished", "failed", "stopped", "interrupted"]);

/** A WebSocket client that keeps every decoded server message, in arrival order. */
export class RawStream {
  messages: ServerMessage[] = [];
  closed?: { code: number; reason: string };
  #ws: WebSocket;
  #opened: Promise<void>;
  #closedP: Promise<void>;

  constructor(base: string, token?: string) {
    this.#ws = new WebSocket(streamUrl(base), streamProtocols(token));
    this.#ws.binaryType = "arraybuffer";
    this.#opened = new Promise((resolve, reject) => {
      this.#ws.onopen = () => resolve();
      this.#ws.onerror = () => reject(new Error("websocket failed to open"));
    });
    this.#closedP = new Promise((resolve) => {
      this.#ws.onclose = (e) => {
        this.closed = { code: e.code, reason: e.reason };
        resolve();
      };
    });
    this.#ws.onmessage = (e) => {
      this.messages.push(wirePackr.unpack(new Uint8Array(e.data)) as ServerMessage);
    };
  }

  opened(): Promise<void> {
    return this.#opened;
  }

  async send(msg: unknown): Promise<void> {
    await this.#opened;
    this.#ws.send(typeof msg === "string" || msg instanceof Uint8Array ? msg : JSON.stringify(msg));
  }

  of<T extends ServerMessage["type"]>(type: T): Extract<ServerMessage, { type: T }>[] {
    return this.messages.filter((m) => m.type === type) as Extract<ServerMessage, { type: T }>[];
  }

  /** Seqs of the records received for a run, in arrival order. */
  seqs(run: string): number[] {
    return this.messages.flatMap((m) =>
      "seq" in m && "run" in m && m.run === run ? [m.seq as number] : []
    );
  }

  finished(run: string): boolean {
    return this.messages.some((m) =>
      m.type === "status" && m.run === run && TERMINAL.has(m.status)
    );
  }

  untilFinished(run: string, timeoutMs = 60_000): Promise<true> {
    return waitFor(() => this.finished(run), `run ${run} to end on the stream`, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CONNECTING) {
      this.#ws.close();
    }
    await this.#closedP;
  }
}

/** Asserts a seq list is exactly 1..n (no gaps, no duplicates, in order). */
export function assertContiguous(seqs: number[], from = 1): void {
  for (let i = 0; i < seqs.length; i++) {
    if (seqs[i] !== from + i) {
      throw new Error(
        `seq ${i}: expected ${from + i}, got ${seqs[i]} (around ${
          seqs.slice(Math.max(0, i - 3), i + 3)
        })`,
      );
    }
  }
}

/** `lab ARGS` (server/cli/main.ts) in a child process: its exit code, stdout and stderr. */
export async function runLab(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}server/cli/main.ts`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
