/**
 * `deno task build`: compiles the AssemblyScript kernels to build/wasm/ and bundles the
 * dashboard (client/dashboard/main.ts, with uPlot and msgpackr from npm) into build/client/,
 * so nothing is fetched from a CDN at run time. Outputs are git-ignored and regenerated.
 */
import { buildWasm } from "./build_wasm.ts";

const root = new URL("..", import.meta.url).pathname;

async function bundleClient(): Promise<void> {
  const entry = `${root}client/dashboard/main.ts`;
  try {
    await Deno.stat(entry);
  } catch {
    return; // no dashboard in this checkout yet
  }
  await Deno.mkdir(`${root}build/client`, { recursive: true });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform=browser",
      "--minify",
      "--sourcemap=linked",
      "-o",
      `${root}build/client/dashboard.js`,
      entry,
    ],
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("bundling client/dashboard/main.ts failed (see above)");
  for (const file of ["index.html", "style.css"]) {
    try {
      await Deno.copyFile(`${root}client/dashboard/${file}`, `${root}build/client/${file}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  await Deno.copyFile(
    `${root}node_modules/uplot/dist/uPlot.min.css`,
    `${root}build/client/uPlot.min.css`,
  );
}

if (import.meta.main) {
  const t0 = performance.now();
  await buildWasm();
  await bundleClient();
  console.error(`build done in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
}
