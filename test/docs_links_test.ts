/**
 * The README and the docs link to each other, to images and to source files by relative path;
 * a renamed or never-written page would leave a dead link that nothing else notices (the README
 * once pointed at a `pq-model.md` that was never written).
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), ".."));

async function markdownFiles(): Promise<string[]> {
  const files = [join(ROOT, "README.md")];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".md")) files.push(p);
    }
  };
  await walk(join(ROOT, "docs"));
  return files;
}

/** Targets of `[text](target)` and `![alt](target)` that are paths, not URLs or anchors. */
export function relativeLinks(markdown: string): string[] {
  const links: string[] = [];
  for (const m of markdown.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1].split("#")[0];
    if (target && !/^[a-z][a-z0-9+.-]*:/i.test(target)) links.push(target);
  }
  return links;
}

Deno.test("relative links in the README and docs are found by the link finder", () => {
  assert.deepEqual(
    relativeLinks("[a](docs/x.md) [b](https://e.org) ![c](img/p.png) [d](#top) [e](y.md#s)"),
    ["docs/x.md", "img/p.png", "y.md"],
  );
});

Deno.test("every relative link in the README and docs points at a file that exists", async () => {
  const dead: string[] = [];
  let checked = 0;
  for (const file of await markdownFiles()) {
    for (const link of relativeLinks(await Deno.readTextFile(file))) {
      checked++;
      const target = join(dirname(file), decodeURIComponent(link));
      try {
        await Deno.stat(target);
      } catch {
        dead.push(`${relative(ROOT, file)} → ${link}`);
      }
    }
  }
  assert.ok(checked > 10, `only ${checked} links found: is the finder broken?`);
  assert.deepEqual(dead, []);
});
