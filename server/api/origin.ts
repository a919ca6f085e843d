/**
 * Keeps pages from other sites out. A browser lets any page it shows open a WebSocket to
 * another host and send it "simple" POSTs, and the lab without a token is open to whoever
 * reaches its port; what gives such a request away is the `Origin` header, which browsers
 * always send on WebSocket handshakes and on cross-origin POST/PUT/PATCH/DELETE. So those
 * requests are refused (403) unless their Origin is the lab's own: the page's own host
 * (same origin), a loopback origin of the lab's port, or one named with `--allow-origin`.
 * Requests without an Origin (curl, the CLI, other services) are not from a browser page and
 * pass.
 *
 * Without a token the lab also answers only to loopback host names: a DNS-rebinding page
 * (evil.example resolving to 127.0.0.1) would otherwise be "same origin" with the lab.
 */
import type { MiddlewareHandler } from "hono";

export interface OriginPolicy {
  /** Origins admitted besides the lab's own, as parseOrigin normalises them. */
  allow: readonly string[];
  /** The port the lab listens on, once known: its loopback origins are admitted. */
  port: () => number | undefined;
  /** No token configured: only loopback host names (and allowed origins' hosts) are served. */
  open: boolean;
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** `http(s)://host[:port]` normalised as browsers send it; throws a message naming the problem. */
export function parseOrigin(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error(`${JSON.stringify(text)} is not an origin like http://host:port`);
  }
  if (
    (u.protocol !== "http:" && u.protocol !== "https:") || u.username || u.password ||
    u.pathname !== "/" || u.search || u.hash
  ) {
    throw new Error(
      `${JSON.stringify(text)} is not an origin like http://host:port (scheme, host and port only)`,
    );
  }
  return u.origin;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Why the policy refuses a request, or undefined when it may go on. */
export function originRefusal(req: Request, policy: OriginPolicy): string | undefined {
  const url = new URL(req.url);
  const allowedHosts = policy.allow.map((o) => new URL(o).host);
  if (policy.open && !isLoopback(url.hostname) && !allowedHosts.includes(url.host)) {
    const port = policy.port();
    return `this lab has no token, so it answers only at loopback addresses ` +
      `(e.g. http://127.0.0.1${port ? `:${port}` : ""}), not at ${url.host}; to use this ` +
      `address, start it with --allow-origin=${url.protocol}//${url.host}`;
  }
  const upgrade = req.headers.get("upgrade")?.toLowerCase() === "websocket";
  if (SAFE_METHODS.has(req.method) && !upgrade) return undefined;
  const origin = req.headers.get("origin");
  if (origin === null || originAllowed(origin, url.host, policy)) return undefined;
  const what = upgrade ? "the stream (WebSocket)" : `${req.method} ${url.pathname}`;
  return `cross-origin request refused: a page from ${origin} may not use ${what} of this lab; ` +
    `if you trust that page, start the lab with --allow-origin=${origin}`;
}

function originAllowed(origin: string, host: string, policy: OriginPolicy): boolean {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return false; // "null" (sandboxed frames, file: pages) and garbage
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return false;
  if (u.host === host.toLowerCase()) return true; // the lab's own page
  if (policy.allow.includes(u.origin)) return true;
  const port = policy.port();
  const originPort = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  return u.protocol === "http:" && isLoopback(u.hostname) && port !== undefined &&
    originPort === port;
}

export function checkOrigin(policy: OriginPolicy): MiddlewareHandler {
  return async (c, next) => {
    const refusal = originRefusal(c.req.raw, policy);
    if (refusal) return c.json({ error: refusal }, 403);
    await next();
  };
}
