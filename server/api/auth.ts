/**
 * Token check. With a token configured, every /api route except GET /api/health (so load
 * balancers and `lab watch` can see the lab is up) needs it, as `Authorization: Bearer <t>`
 * or `?token=<t>` (browsers cannot put headers on a WebSocket). Without a token the lab is
 * open, which main.ts only allows on a loopback address.
 */
import type { MiddlewareHandler } from "hono";

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
  return new URL(req.url).searchParams.get("token") ?? undefined;
}

export function requireToken(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (!token || (c.req.method === "GET" && c.req.path === "/api/health")) return await next();
    const given = presentedToken(c.req.raw);
    if (given === undefined || !sameToken(given, token)) {
      c.header("WWW-Authenticate", 'Bearer realm="lab"');
      return c.json({
        error: given === undefined
          ? "this lab requires a token: send Authorization: Bearer <token> or ?token=<token>"
          : "wrong token",
      }, 401);
    }
    await next();
  };
}
