/** `deno task serve` on a port that is taken says which port, in one line, with status 2. */
import assert from "node:assert/strict";
import { ROOT } from "./lab_harness.ts";

Deno.test("a busy port is named in a one-line error", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const dataDir = await Deno.makeTempDir({ prefix: "lab-port-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}server/main.ts`, `--port=${port}`, `--data=${dataDir}`],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr);
    assert.match(stderr, new RegExp(`^error: port ${port} on 127\\.0\\.0\\.1 is already in use`));
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
  } finally {
    taken.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
