/**
 * A run made with `lab run --out=DIR` opens in a running lab: `lab import PATH --server=URL`
 * (POST /api/runs/import, the raw log as application/octet-stream) stores it as a run of the
 * lab under its own id, exported exactly as the file exports; the same id again is refused
 * with 409, and a file that is not a run log with 400.
 */
import assert from "node:assert/strict";
import { runLab, startTestLab } from "./lab_harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const lab = runLab;

Deno.test(
  "lab import puts a local run log into a running lab; twice is 409, junk is 400",
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "lab-import-" });
    const server = await startTestLab();
    try {
      const made = await lab(
        "run",
        "shape-matters",
        "--backend=wasm",
        "--d=20",
        "--n=10",
        "--steps=300",
        "--every=100",
        "--delta=0.5,1",
        "--name=local",
        "--quiet",
        `--out=${dir}`,
      );
      assert.equal(made.code, 0, made.stderr);
      // The directory is a run store: the log, and its derived files in derived/.
      const [file] = [...Deno.readDirSync(dir)].filter((f) => f.name.endsWith(".lablog"))
        .map((f) => `${dir}/${f.name}`);
      const id = file.split("/").at(-1)!.replace(".lablog", "");

      const imported = await lab("import", file, `--server=${server.url}`);
      assert.equal(imported.code, 0, imported.stderr);
      assert.match(imported.stdout, new RegExp(`^imported ${id} into `));
      const runs = await (await fetch(`${server.url}/api/runs`)).json();
      assert.equal(runs.length, 1);
      assert.equal(runs[0].id, id);
      assert.equal(runs[0].status, "finished");
      assert.equal(runs[0].name, "local");
      assert.deepEqual(runs[0].sweep.settings, [{ delta: 0.5, seed: 0 }, { delta: 1, seed: 0 }]);
      const served = await (await fetch(`${server.url}/api/runs/${id}/metrics.csv`)).text();
      const exported = await lab("export", file);
      assert.equal(served, exported.stdout);

      const again = await lab("import", file, `--server=${server.url}`);
      assert.equal(again.code, 2);
      assert.match(again.stderr, new RegExp(`run ${id} already exists on this lab`));
      assert.equal(again.stderr.trim().split("\n").length, 1);

      const post = (body: BodyInit, type: string) =>
        fetch(`${server.url}/api/runs/import`, {
          method: "POST",
          body,
          headers: { "content-type": type },
        });
      const junk = await post(new Uint8Array([1, 2, 3, 4, 5]), "application/octet-stream");
      assert.equal(junk.status, 400);
      assert.match((await junk.json()).error, /cannot import: the upload is not a lab run log/);
      const json = await post("{}", "application/json");
      assert.equal(json.status, 415);
      await json.body?.cancel();
      const listed = await (await fetch(`${server.url}/api/runs`)).json();
      assert.equal(listed.length, 1, "refused uploads leave nothing behind");
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
