/**
 * POST, PUT and PATCH bodies must say they are JSON (415 otherwise). A browser page may send
 * another site a "simple" request (text/plain, form data) without asking first; JSON needs a
 * CORS preflight, which the lab never grants, so requiring it shuts that door even for a page
 * whose Origin the browser does not send. A route that takes another kind of body is
 * declared here, with the one type it takes.
 */
import type { MiddlewareHandler } from "hono";

export interface RawBodyRoute {
  method: string;
  path: string;
  /** The media type this route takes instead of application/json. */
  type: string;
}

/** Routes whose body is not JSON: a run log to import (docs/protocol.md). */
export const RAW_BODY_ROUTES: readonly RawBodyRoute[] = [
  { method: "POST", path: "/api/runs/import", type: "application/octet-stream" },
];

const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);

/** A request without a body (e.g. POST …/stop) has nothing to declare. */
function hasBody(req: Request): boolean {
  if (req.headers.has("transfer-encoding")) return true;
  const length = req.headers.get("content-length");
  // Deno.serve gives even an empty request a body stream, but then says content-length: 0.
  return length !== null ? length !== "0" : req.body !== null;
}

export function requireBodyType(raw: readonly RawBodyRoute[] = RAW_BODY_ROUTES): MiddlewareHandler {
  return async (c, next) => {
    if (!BODY_METHODS.has(c.req.method) || !hasBody(c.req.raw)) return await next();
    const route = raw.find((r) => r.method === c.req.method && r.path === c.req.path);
    const want = route?.type ?? "application/json";
    const given = c.req.header("content-type")?.split(";")[0].trim().toLowerCase() ?? "";
    if (given !== want) {
      return c.json({
        error: `${c.req.method} ${c.req.path} takes Content-Type: ${want}, not ${
          given ? given : "a body without one"
        }`,
      }, 415);
    }
    await next();
  };
}
