/**
 * Token check. With a token configured, every /api route except GET /api/health (so load
 * balancers and `lab watch` can see the lab is up) needs it, as `Authorization: Bearer <t>`,
 * or on a WebSocket (browsers cannot put headers on one) as the subprotocol
 * `lab.bearer.<base64url(t)>` (client/protocol.ts streamProtocols). `?token=<t>` is still
 * accepted for tools that can do neither, but URLs end up in logs and browser history, so the
 * lab's own clients never use it. Without a token the lab is open, which main.ts only allows
 * on a loopback address.
 */
import type { MiddlewareHandler } from "hono";
import { TOKEN_SUBPROTOCOL_PREFIX, tokenFromProtocol } from "../../client/protocol.ts";

/** Compares in time independent of where the strings differ. */
export function sameToken(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

export function presentedToken(req: Request): string | undefined {
  const auth = req.headers.get("authorization");
  if (auth?.toLowerCase().startsWith("bearer ")) return auth.slice(7).trim();
  const offered = offeredProtocols(req).find((p) => p.startsWith(TOKEN_SUBPROTOCOL_PREFIX));
  // A malformed token subprotocol presents a token that matches nothing: "wrong token".
  if (offered !== undefined) return tokenFromProtocol(offered) ?? "";
  return new URL(req.url).searchParams.get("token") ?? undefined;
}

/** The subprotocols a WebSocket handshake offers (Sec-WebSocket-Protocol), in order. */
export function offeredProtocols(req: Request): string[] {
  const header = req.headers.get("sec-websocket-protocol");
  return header ? header.split(",").map((p) => p.trim()).filter(Boolean) : [];
}

export function requireToken(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (!token || (c.req.method === "GET" && c.req.path === "/api/health")) return await next();
    const given = presentedToken(c.req.raw);
    if (given === undefined || !sameToken(given, token)) {
      c.header("WWW-Authenticate", 'Bearer realm="lab"');
      return c.json({
        error: given === undefined
          ? "this lab requires a token: send Authorization: Bearer <token> (see docs/protocol.md §Auth)"
          : "wrong token",
      }, 401);
    }
    await next();
  };
}
