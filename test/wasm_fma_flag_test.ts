/**
 * `--wasm-fma` picks the wasm kernels' build (server/engine/wasm/builds.ts) and the records
 * say which ran: `lab run --wasm-fma=off` runs the strict build, in its worker threads too
 * (adapter "wasm-simd128 (V8 …)"), without the flag the FMA build where the engine has
 * relaxed SIMD ("wasm-simd128+fma (V8 …)"); `serve --wasm-fma=off` reports the strict build
 * in /api/health; a bad value is a one-line usage error. The FMA build's kernels do contain
 * relaxed_madd and the strict build's do not.
 */
import assert from "node:assert/strict";
import { ensureWasm } from "../server/build_wasm.ts";
import { WASM_BUILD_DIR, wasmBackendFor } from "../server/engine/wasm/backend.ts";
import {
  relaxedSimdAvailable,
  WASM_FMA_ENV,
  wasmAdapterName,
  wasmFileName,
} from "../server/engine/wasm/builds.ts";
import { ROOT, startServerProcess } from "./lab_harness.ts";

await ensureWasm();

/** f32x4.relaxed_madd: 0xfd, then 0x105 as LEB128. */
const RELAXED_MADD = [0xfd, 0x85, 0x02];

function contains(bytes: Uint8Array, pattern: number[]): boolean {
  outer: for (let i = 0; i + pattern.length <= bytes.length; i++) {
    for (let j = 0; j < pattern.length; j++) if (bytes[i + j] !== pattern[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("the FMA build's kernels use relaxed_madd; the strict build's do not", async () => {
  for (const kernel of ["shape_matters", "linear_label_noise", "pegr"]) {
    const read = (build: "strict" | "fma") =>
      Deno.readFile(new URL(wasmFileName(kernel, build), WASM_BUILD_DIR));
    assert.ok(contains(await read("fma"), RELAXED_MADD), `${kernel}.fma.wasm: no relaxed_madd`);
    assert.ok(!contains(await read("strict"), RELAXED_MADD), `${kernel}.wasm has relaxed_madd`);
  }
});

/** `deno task lab run …` as a child process, with LAB_WASM_FMA unset. */
async function lab(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = Deno.env.toObject();
  delete env[WASM_FMA_ENV];
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}server/cli/main.ts`, ...args],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const RUN = [
  "run",
  "shape-matters",
  "--d=20",
  "--n=10",
  "--replicas=4",
  "--steps=300",
  "--every=100",
  "--backend=wasm",
  "--json",
  "--quiet",
];

/** The snapshots' metrics (wall times dropped) and the summary's adapter. */
async function runLab(extra: string[]): Promise<{ metrics: string[]; adapter: string }> {
  const r = await lab([...RUN, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const summary = lines.find((l) => l.type === "summary");
  return {
    metrics: lines.filter((l) => l.type === "snapshot").map((l) => JSON.stringify(l.metrics)),
    adapter: summary.adapter,
  };
}

Deno.test("lab run --wasm-fma=off runs the strict build in every thread and says so", async () => {
  const strict2 = await runLab(["--wasm-fma=off", "--threads=2"]);
  assert.equal(strict2.adapter, wasmAdapterName("strict"));
  assert.doesNotMatch(strict2.adapter, /fma/);
  const strict1 = await runLab(["--wasm-fma=off", "--threads=1"]);
  assert.deepEqual(strict2.metrics, strict1.metrics, "strict build: 2 threads = 1 thread");
  const auto = await runLab(["--threads=2"]);
  const expected = relaxedSimdAvailable() ? "fma" : "strict";
  assert.equal(auto.adapter, wasmAdapterName(expected));
  if (expected === "fma") assert.match(auto.adapter, /^wasm-simd128\+fma \(V8 /);
  // The same run in this process on the strict build: the CLI's numbers are that build's.
  const probe = await wasmBackendFor("strict").probe();
  assert.equal(probe.adapter, strict1.adapter);
});

Deno.test("a bad --wasm-fma value is a one-line usage error", async () => {
  const r = await lab([...RUN, "--wasm-fma=maybe"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), "error: --wasm-fma must be one of auto, off, got maybe");
});

Deno.test("serve --wasm-fma=off reports the strict build in /api/health", async () => {
  const dataDir = await Deno.makeTempDir();
  const server = await startServerProcess(dataDir, ["--wasm-fma=off"]);
  try {
    const health = await (await fetch(`${server.url}/api/health`)).json();
    assert.equal(health.backends.wasm.adapter, wasmAdapterName("strict"));
  } finally {
    server.child.kill("SIGTERM");
    await server.child.status;
    await Deno.remove(dataDir, { recursive: true });
  }
});
