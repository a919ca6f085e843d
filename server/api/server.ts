/**
 * Starts the lab: run manager on a data directory, stream hub, HTTP app, Deno.serve. Used by
 * server/main.ts and, in-process, by the tests.
 */
import { fileURLToPath } from "node:url";
import { RunManager, type RunManagerOptions } from "../runs/manager.ts";
import { StreamHub, type StreamOptions } from "./stream.ts";
import { createApp } from "./app.ts";
import { backendReport } from "./health.ts";
import type { ClusterView } from "./app.ts";

export interface LabServerOptions extends RunManagerOptions {
  /** 0 picks a free port. */
  port: number;
  hostname: string;
  token?: string;
  /** Origins admitted besides the lab's own and its loopback ones (`--allow-origin`). */
  allowOrigins?: readonly string[];
  stream?: StreamOptions;
  staticDir?: string;
  /** The multi-box coordinator (--nats): its health and workers (also passed as `executor`). */
  cluster?: ClusterView;
}

export interface LabServer {
  url: string;
  port: number;
  manager: RunManager;
  hub: StreamHub;
  /** Closes the streams, marks runs in flight interrupted, stops listening. */
  shutdown(): Promise<void>;
}

export const DEFAULT_STATIC_DIR = fileURLToPath(new URL("../../build/client/", import.meta.url));

export async function startLab(opts: LabServerOptions): Promise<LabServer> {
  const manager = await RunManager.open(opts);
  const hub = new StreamHub(manager, opts.stream);
  const app = createApp({
    manager,
    hub,
    token: opts.token,
    allowOrigins: opts.allowOrigins,
    // Requests arrive only once the server listens, so its address is known by then.
    port: () => server.addr.port,
    staticDir: opts.staticDir ?? DEFAULT_STATIC_DIR,
    backends: backendReport,
    cluster: opts.cluster,
  });
  const ac = new AbortController();
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    port: opts.port,
    hostname: opts.hostname,
    signal: ac.signal,
    onListen: (addr) => resolve(addr as Deno.NetAddr),
  }, app.fetch);
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    manager,
    hub,
    shutdown() {
      closing ??= (async () => {
        // Runs in flight checkpoint and are marked interrupted first, so subscribers still
        // get that status before their sockets close.
        await manager.shutdown();
        hub.close();
        ac.abort();
        await server.finished;
      })();
      return closing;
    },
  };
}
