/**
 * The Python client (client/python, `lab_client`) installed with pip into a fresh venv and run
 * against a real lab: it starts a sweep, follows it to the end, returns the metrics as numpy
 * arrays and a tidy pandas DataFrame equal to the lab's CSV, lists, searches, renames and
 * imports runs. Needs Debian's python3-venv, python3-numpy, python3-pandas, python3-msgpack,
 * python3-websockets and python3-setuptools; without them it fails saying how to install them.
 */
import assert from "node:assert/strict";
import { ROOT, startTestLab } from "./lab_harness.ts";

const PYTHON = "/usr/bin/python3";
const INSTALL_HINT = "the Python client test needs Debian's python3 with venv, setuptools, " +
  "numpy, pandas, msgpack and websockets: sudo apt-get install python3-venv " +
  "python3-setuptools python3-numpy python3-pandas python3-msgpack python3-websockets";

async function sh(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const SCRIPT = `
import json, sys
import numpy as np
from lab_client import Lab, LabError

lab = Lab(sys.argv[1])
run = lab.start("shape-matters", params={"d": 20, "n": 10, "algo": "label-noise"},
                grid={"delta": "0.5,1"}, seeds=2, steps=300, every=100, backend="wasm",
                name="py sweep", tags=["notebook"])
status = run.follow(progress=False)
steps, metrics = run.metrics()
df = run.dataframe()
last = df[df.step == df.step.max()]
try:
    lab.start("shape-matters", params={"lr": None})
    refused = None
except LabError as e:
    refused = [e.status, [f["field"] for f in e.errors]]
run.annotate(note="from python")
imported = lab.import_log(sys.argv[2])
print(json.dumps({
    "status": status,
    "steps": steps.tolist(),
    "shape": list(metrics["test_error"].shape),
    "final_test_error": metrics["test_error"][-1].tolist(),
    "columns": list(df.columns),
    "rows": len(df),
    "by_delta": last.groupby("delta").test_error.mean().to_dict(),
    "settings": run.settings,
    "found": [r["id"] for r in lab.runs(q="notebook")],
    "note": run.summary()["note"],
    "refused": refused,
    "imported": imported.id,
    "runs": len(lab.runs()),
    "id": run.id,
}))
`;

Deno.test(
  "the Python client, pip-installed in a venv, runs a sweep and returns its metrics",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const check = await sh(PYTHON, [
      "-c",
      "import venv, setuptools, numpy, pandas, msgpack, websockets",
    ]).catch(() => ({ code: 1, stderr: "no /usr/bin/python3" }));
    if (check.code !== 0) throw new Error(`${INSTALL_HINT}\n${check.stderr}`);

    const dir = await Deno.makeTempDir({ prefix: "lab-pyclient-" });
    const lab = await startTestLab();
    try {
      // Install from a copy: pip builds in the source tree, which must stay clean.
      await sh("cp", ["-r", `${ROOT}client/python`, `${dir}/src`]);
      const venv = await sh(PYTHON, ["-m", "venv", "--system-site-packages", `${dir}/venv`]);
      assert.equal(venv.code, 0, venv.stderr);
      const pip = await sh(`${dir}/venv/bin/python`, [
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-build-isolation",
        `${dir}/src`,
      ]);
      assert.equal(pip.code, 0, `pip install failed: ${pip.stderr}`);

      // A run log to import, made by the CLI.
      const made = await sh(Deno.execPath(), [
        "run",
        "-A",
        `${ROOT}server/cli/main.ts`,
        "run",
        "shape-matters",
        "--backend=wasm",
        "--steps=10",
        "--every=10",
        "--quiet",
        `--out=${dir}/logs`,
      ]);
      assert.equal(made.code, 0, made.stderr);
      // The directory is a run store: the log, and its derived files in derived/.
      const [log] = [...Deno.readDirSync(`${dir}/logs`)].filter((f) => f.name.endsWith(".lablog"))
        .map((f) => `${dir}/logs/${f.name}`);

      const py = await sh(`${dir}/venv/bin/python`, ["-c", SCRIPT, lab.url, log], {
        PYTHONDONTWRITEBYTECODE: "1",
      });
      assert.equal(py.code, 0, py.stderr);
      const r = JSON.parse(py.stdout);
      assert.equal(r.status, "finished");
      assert.deepEqual(r.steps, [0, 100, 200, 300]);
      assert.deepEqual(r.shape, [4, 4]);
      assert.deepEqual(r.columns.slice(0, 5), ["step", "wall_ms", "replica", "delta", "seed"]);
      assert.equal(r.rows, 16);
      assert.deepEqual(r.settings, [
        { delta: 0.5, seed: 0 },
        { delta: 0.5, seed: 1 },
        { delta: 1, seed: 0 },
        { delta: 1, seed: 1 },
      ]);
      // The DataFrame's per-setting mean equals the arrays' (and so the CSV's) final values.
      const fe = r.final_test_error as number[];
      assert.ok(Math.abs(r.by_delta["0.5"] - (fe[0] + fe[1]) / 2) < 1e-9);
      assert.ok(Math.abs(r.by_delta["1.0"] - (fe[2] + fe[3]) / 2) < 1e-9);
      const csv = await (await fetch(`${lab.url}/api/runs/${r.id}/metrics.csv`)).text();
      const lastRow = csv.trim().split("\n").at(-1)!.split(",");
      const col = csv.split("\n")[0].split(",").indexOf("test_error");
      assert.equal(Number(lastRow[col]), fe[3]);
      assert.deepEqual(r.found, [r.id]);
      assert.equal(r.note, "from python");
      assert.deepEqual(r.refused, [400, ["params.lr"]]);
      assert.match(r.imported, /^shape-matters-/);
      assert.equal(r.runs, 2);
    } finally {
      await lab.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
