/**
 * The Python example (examples/python_subscriber.py), written from docs/protocol.md, against a
 * real server that requires a token: it must print every snapshot the stream carries and exit
 * 0 when the run finishes. Needs Debian's python3-msgpack and python3-websockets; without
 * them the test fails saying how to install them (it never skips).
 */
import assert from "node:assert/strict";
import { RawStream, ROOT, smallSpec, startTestLab, submit } from "./lab_harness.ts";

const INSTALL_HINT = "the Python subscriber test needs python3 with msgpack and websockets: " +
  "sudo apt-get install python3-msgpack python3-websockets";

/** Debian's python3 first (CI installs the packages there), then whatever `python3` is. */
async function findPython(): Promise<string> {
  for (const exe of ["/usr/bin/python3", "python3"]) {
    try {
      const out = await new Deno.Command(exe, {
        args: ["-c", "import msgpack, websockets"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (out.success) return exe;
    } catch { /* not installed */ }
  }
  throw new Error(INSTALL_HINT);
}

async function runPython(python: string, args: string[]) {
  const out = await new Deno.Command(python, {
    args: [`${ROOT}examples/python_subscriber.py`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test(
  "the Python example follows a run to the end and prints every snapshot",
  { sanitizeOps: false, sanitizeResources: false },
  async () => {
    const python = await findPython();
    const token = "py-secret";
    const lab = await startTestLab({ token });
    try {
      const watch = new RawStream(lab.url, token);
      await watch.send({ type: "subscribe", runs: "*" });
      const id = await submit(lab.url, smallSpec({ steps: 30_000, every: 500 }), token);
      const py = await runPython(python, [id, "--url", lab.url, "--token", token]);
      assert.equal(py.code, 0, `python exited ${py.code}: ${py.stderr}`);
      await watch.untilFinished(id);

      const lines = py.stdout.trim().split("\n");
      assert.match(lines[0], new RegExp(`^# ${id}: shape-matters on wasm .*metrics train_loss`));
      assert.match(lines.at(-1)!, /^# status finished at step 30000$/);
      const steps = lines.filter((l) => l.startsWith("step ")).map((l) => Number(l.split(" ")[1]));
      const snaps = watch.of("snapshot");
      assert.deepEqual(steps, snaps.map((s) => s.step));
      // Values: replica means of the last snapshot, printed with 6 significant digits.
      const last = lines.filter((l) => l.startsWith("step ")).at(-1)!;
      const s = snaps.at(-1)!;
      for (const [name, values] of Object.entries(s.metrics)) {
        const printed = Number(last.match(new RegExp(`${name}=(\\S+)`))![1]);
        const mean = values.reduce((a, b) => a + b, 0) / values.length;
        assert.ok(Math.abs(printed - mean) <= 1e-5 * Math.abs(mean) + 1e-12, `${name}`);
      }

      const wrong = await runPython(python, [id, "--url", lab.url, "--token", "nope"]);
      assert.equal(wrong.code, 2, "a wrong token is refused");
      assert.match(wrong.stderr, /refused the stream \(HTTP 401\)/);
      const missing = await runPython(python, ["no-such-run", "--url", lab.url, "--token", token]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /unknown_run: no run with id "no-such-run"/);
      await watch.close();
    } finally {
      await lab.close();
    }
  },
);

Deno.test("the Python example without a lab prints one line, no traceback", async () => {
  const python = await findPython();
  // A port that was free a moment ago: nothing listens there.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  listener.close();
  for (const args of [["--url", url], ["some-run", "--url", url]]) {
    const py = await runPython(python, args);
    assert.equal(py.code, 1, py.stderr);
    assert.doesNotMatch(py.stderr, /Traceback/);
    assert.equal(py.stderr.trim().split("\n").length, 1, py.stderr);
    assert.match(py.stderr, new RegExp(`^error: cannot reach the lab at ${url} .*deno task serve`));
  }
});
