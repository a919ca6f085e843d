/**
 * The dashboard's built files (build/client/, made by `deno task build`), served at /.
 * Paths are resolved inside the root directory only.
 */
import { extname, join, normalize } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".wasm": "application/wasm",
};

export async function serveStatic(root: string, urlPath: string): Promise<Response | undefined> {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  // No file name holds a NUL; the filesystem API would throw (and name the path).
  if (rel.includes("\0")) return undefined;
  if (rel.endsWith("/")) rel += "index.html";
  const path = normalize(join(root, rel));
  if (!path.startsWith(normalize(root + "/"))) return undefined;
  try {
    const body = await Deno.readFile(path);
    return new Response(body, {
      headers: {
        "content-type": TYPES[extname(path)] ?? "application/octet-stream",
        // Rebuilt files keep their names, so the browser must revalidate.
        "cache-control": "no-cache",
      },
    });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory) {
      return undefined;
    }
    throw e;
  }
}
