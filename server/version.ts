/** The code version stamped on every run log and stream hello: deno.json's version + git commit. */
import denoJson from "../deno.json" with { type: "json" };

let cached: string | undefined;

export function codeVersion(): string {
  if (cached) return cached;
  let commit = "";
  try {
    const out = new Deno.Command("git", {
      args: ["rev-parse", "--short=12", "HEAD"],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (out.success) commit = new TextDecoder().decode(out.stdout).trim();
    const dirty = new Deno.Command("git", {
      args: ["status", "--porcelain", "--untracked-files=no"],
      cwd: new URL("..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (commit && dirty.success && dirty.stdout.length > 0) commit += "-dirty";
  } catch {
    // No git (e.g. an exported tarball): the package version alone still identifies the code.
  }
  cached = commit ? `${denoJson.version}+${commit}` : denoJson.version;
  return cached;
}
