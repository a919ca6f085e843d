/**
 * The lab's HTTP API on Hono, as a factory so tests can call `app.request()` without a
 * socket. Routes: docs/protocol.md §HTTP. JSON everywhere, errors as {error, errors?}.
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { EXPERIMENTS } from "../experiments/registry.ts";
import type { RunManager } from "../runs/manager.ts";
import { recordToJson } from "../runs/export.ts";
import { codeVersion } from "../version.ts";
import type { StreamHub } from "./stream.ts";
import { requireToken } from "./auth.ts";
import { internalErrorBody, userError } from "./errors.ts";
import { checkOrigin } from "./origin.ts";
import { requireBodyType } from "./body_type.ts";
import { STREAM_SUBPROTOCOL } from "../../client/protocol.ts";
import { serveStatic } from "./static.ts";
import type { BackendReport } from "./health.ts";
import { runMatches, type RunQuery, validateAnnotation } from "../runs/annotations.ts";
import { MAX_IMPORT_BYTES } from "../runs/import.ts";
import type { NatsHealth, WorkerInfo } from "../cluster/coordinator.ts";
import { memoryReport } from "../memory_relief.ts";

export interface AppOptions {
  manager: RunManager;
  /** Absent: /api/stream answers 503 (tests of the HTTP surface alone). */
  hub?: StreamHub;
  token?: string;
  /** Origins admitted besides the lab's own (`--allow-origin`), normalised by parseOrigin. */
  allowOrigins?: readonly string[];
  /** The port the lab listens on, once known (its loopback origins are admitted). */
  port?: () => number | undefined;
  /** Directory with the built dashboard; absent or missing: / explains how to build it. */
  staticDir?: string;
  backends: () => Promise<BackendReport>;
  /** Present on a multi-box coordinator (--nats): NATS health and the workers' list. */
  cluster?: ClusterView;
}

/** What the API shows of the multi-box coordinator (server/cluster/coordinator.ts). */
export interface ClusterView {
  health(): NatsHealth;
  workers(): Promise<WorkerInfo[]>;
}

const MAX_SPEC_BYTES = 1024 * 1024;

export function createApp(opts: AppOptions): Hono {
  const { manager } = opts;
  const app = new Hono();

  app.onError((err, c) => {
    console.error(`${c.req.method} ${c.req.path}:`, err);
    const mapped = userError(err);
    if (mapped) return c.json(mapped.body, mapped.status, mapped.headers);
    return c.json(internalErrorBody(err), 500);
  });

  // Origin before the token (it needs no secret), the body's type after it (so a caller
  // without the token learns nothing else).
  app.use(
    "*",
    checkOrigin({
      allow: opts.allowOrigins ?? [],
      port: opts.port ?? (() => undefined),
      open: !opts.token,
    }),
  );
  app.use("/api/*", requireToken(opts.token));
  app.use("*", requireBodyType());

  app.get("/api/health", async (c) => {
    const report = await opts.backends();
    return c.json({
      ok: true,
      version: codeVersion(),
      ...report,
      runs_in_flight: manager.inFlight(),
      runs_queued: manager.queued(),
      runs_total: manager.ids().length,
      read_only: manager.readOnly,
      stream: opts.hub?.stats(),
      auth: opts.token ? "token" : "none",
      memory: memoryReport(),
      ...(opts.cluster ? { nats: opts.cluster.health() } : {}),
    });
  });

  /** The workers of a multi-box lab (their lab_workers announcements). */
  app.get("/api/workers", async (c) => {
    if (!opts.cluster) {
      return c.json({ error: "this lab computes its runs itself (start it with --nats=URL)" }, 404);
    }
    try {
      return c.json(await opts.cluster.workers());
    } catch (e) {
      const mapped = userError(e);
      if (mapped) return c.json(mapped.body, mapped.status, mapped.headers);
      throw e;
    }
  });

  app.get("/api/experiments", (c) =>
    c.json(
      Object.values(EXPERIMENTS).map((e) => ({
        id: e.id,
        title: e.title,
        paper: e.paper,
        notes: e.notes,
        params: e.params,
        metrics: e.metrics,
        frames: (e.frames ?? []).map((f) => ({ name: f.name, doc: f.doc })),
        defaults: e.defaults,
      })),
    ));

  app.get("/api/runs", (c) => {
    const query: RunQuery = {
      q: c.req.query("q"),
      experiment: c.req.query("experiment"),
      status: c.req.query("status"),
    };
    return c.json(manager.summaries().filter((r) => runMatches(r, query)));
  });

  /** A run log made elsewhere (lab run --out), as raw bytes: docs/protocol.md. */
  app.post(
    "/api/runs/import",
    bodyLimit({
      maxSize: MAX_IMPORT_BYTES,
      onError: (c) => c.json({ error: `run log over ${MAX_IMPORT_BYTES} bytes` }, 413),
    }),
    async (c) => {
      const type = c.req.header("content-type") ?? "";
      if (!type.toLowerCase().startsWith("application/octet-stream")) {
        return c.json({
          error: "send the run log as the body, with content-type application/octet-stream",
        }, 415);
      }
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      try {
        const id = await manager.import(bytes);
        return c.json({ id, imported: true }, 201);
      } catch (e) {
        const mapped = userError(e);
        if (mapped) return c.json(mapped.body, mapped.status, mapped.headers);
        throw e;
      }
    },
  );

  app.post(
    "/api/runs",
    bodyLimit({
      maxSize: MAX_SPEC_BYTES,
      onError: (c) => c.json({ error: `request body over ${MAX_SPEC_BYTES} bytes` }, 413),
    }),
    async (c) => {
      let body: unknown;
      try {
        body = JSON.parse(await c.req.text());
      } catch (e) {
        const message = `malformed JSON: ${e instanceof Error ? e.message : e}`;
        return c.json({ error: message, errors: [{ field: "(body)", message }] }, 400);
      }
      try {
        const id = await manager.submit(body);
        return c.json({ id }, 201);
      } catch (e) {
        const mapped = userError(e);
        if (mapped) return c.json(mapped.body, mapped.status, mapped.headers);
        throw e;
      }
    },
  );

  const notFound = (id: string) => ({ error: `no run with id ${JSON.stringify(id)}` });

  app.get("/api/runs/:id", async (c) => {
    const d = await manager.detail(c.req.param("id"));
    if (!d) return c.json(notFound(c.req.param("id")), 404);
    // Where the log lies on disk is the server's business, never a reply's.
    const { path: _path, ...detail } = d;
    return c.json(recordToJson(detail));
  });

  /** Rename, retag or annotate a run, also after it ended: {name?, tags?, note?}. */
  app.patch("/api/runs/:id", async (c) => {
    const id = c.req.param("id");
    if (!manager.has(id)) return c.json(notFound(id), 404);
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch (e) {
      const message = `malformed JSON: ${e instanceof Error ? e.message : e}`;
      return c.json({ error: message, errors: [{ field: "(body)", message }] }, 400);
    }
    try {
      await manager.annotate(id, validateAnnotation(body));
    } catch (e) {
      const mapped = userError(e);
      if (mapped) return c.json(mapped.body, mapped.status, mapped.headers);
      throw e;
    }
    return c.json(manager.summaries().find((r) => r.id === id));
  });

  app.post("/api/runs/:id/stop", async (c) => {
    const id = c.req.param("id");
    if (!manager.has(id)) return c.json(notFound(id), 404);
    const stopped = await manager.stop(id);
    const status = manager.status(id);
    if (!stopped) {
      return c.json({ id, status, error: `run ${id} has already ended (${status})` }, 409);
    }
    return c.json({ id, status });
  });

  app.post("/api/runs/:id/resume", async (c) => {
    const id = c.req.param("id");
    if (!manager.has(id)) return c.json(notFound(id), 404);
    const refused = manager.whyNotResumable(id);
    if (refused) return c.json({ id, status: manager.status(id), error: refused }, 409);
    try {
      await manager.resume(id);
    } catch (e) {
      // The reason may name files: logged here, not sent.
      console.error(`resuming run ${id}:`, e);
      return c.json({ id, error: `run ${id} could not be resumed (see the server log)` }, 500);
    }
    return c.json({ id, status: manager.status(id) });
  });

  app.delete("/api/runs/:id", async (c) => {
    const id = c.req.param("id");
    try {
      if (!(await manager.remove(id))) return c.json(notFound(id), 404);
    } catch (e) {
      const mapped = userError(e);
      if (mapped) return c.json(mapped.body, mapped.status, mapped.headers);
      throw e;
    }
    return c.json({ id, deleted: true });
  });

  app.get("/api/runs/:id/metrics.csv", async (c) => {
    const id = c.req.param("id");
    const header = manager.header(id);
    if (!header) return c.json(notFound(id), 404);
    // Streamed from the log: memory stays bounded whatever the run's size.
    const enc = new TextEncoder();
    const chunks = manager.csv(id);
    // The first chunk is read before answering, so a log that cannot be opened is a 500 with
    // the cause in words (onError), not a reply cut off after its status line.
    let first: IteratorResult<string> | undefined = await chunks.next();
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (first) {
          const head = first;
          first = undefined;
          if (head.done) ctl.close();
          else ctl.enqueue(enc.encode(head.value));
          return;
        }
        try {
          const next = await chunks.next();
          if (next.done) ctl.close();
          else ctl.enqueue(enc.encode(next.value));
        } catch (e) {
          console.error(`csv export of ${id}:`, e);
          ctl.error(new Error("export failed"));
        }
      },
      async cancel() {
        await chunks.return(undefined);
      },
    });
    return c.body(body, 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="${id}.csv"`,
    });
  });

  /** The run log itself: the reproducible record of a run (see server/runs/runlog.ts). */
  app.get("/api/runs/:id/log", async (c) => {
    const id = c.req.param("id");
    const path = manager.logPath(id);
    if (!path) return c.json(notFound(id), 404);
    const file = await Deno.open(path, { read: true });
    return c.body(file.readable, 200, {
      "content-type": "application/octet-stream",
      "content-disposition": `attachment; filename="${id}.lablog"`,
    });
  });

  app.get("/api/stream", (c) => {
    if (!opts.hub) return c.json({ error: "the stream is not available here" }, 503);
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      return c.json({
        error: "this endpoint is a WebSocket (msgpack frames); see docs/protocol.md",
      }, 426);
    }
    // Under Deno.serve, Hono's env is the connection info. Read it before upgrading: once
    // the request is upgraded, Deno's remoteAddr getter throws "Request closed".
    const addr = (c.env as Deno.ServeHandlerInfo<Deno.NetAddr> | undefined)?.remoteAddr;
    let upgraded;
    try {
      // Answer with lab.stream when offered: a browser that offered a token subprotocol with
      // it refuses a handshake that selects none. Deno.upgradeWebSocket reads the offer split
      // at ", " exactly (as browsers send it) and throws for a protocol it does not see there.
      const offered = c.req.header("sec-websocket-protocol")?.split(", ") ?? [];
      const protocol = offered.includes(STREAM_SUBPROTOCOL) ? STREAM_SUBPROTOCOL : undefined;
      upgraded = Deno.upgradeWebSocket(c.req.raw, { protocol });
    } catch (e) {
      // e.g. the client went away mid-handshake; nothing to serve.
      return c.json({ error: `cannot upgrade: ${e instanceof Error ? e.message : e}` }, 400);
    }
    const { socket, response } = upgraded;
    opts.hub.attach(socket, addr ? `${addr.hostname}:${addr.port}` : undefined);
    return response;
  });

  app.all(
    "/api/*",
    (c) => c.json({ error: `no such endpoint: ${c.req.method} ${c.req.path}` }, 404),
  );

  app.get("*", async (c) => {
    const res = opts.staticDir ? await serveStatic(opts.staticDir, c.req.path) : undefined;
    if (res) return res;
    if (c.req.path === "/" || c.req.path === "/index.html") {
      return c.html(
        "<!doctype html><title>lab</title><p>The dashboard is not built. Run <code>deno task build</code> " +
          "(or start the lab with <code>deno task serve</code>, which builds first). The API is at " +
          '<a href="/api/health">/api/health</a>.</p>',
        503,
      );
    }
    return c.json({ error: `not found: ${c.req.path}` }, 404);
  });

  return app;
}
