/**
 * A real nats-server with JetStream for the multi-box tests: a free loopback port, its own
 * store directory, stopped (and restartable on the same port and store) by the test.
 * Debian's nats-server 2.9 is enough (.ci/run installs it).
 */
import { waitFor } from "./lab_harness.ts";

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  /** Kills the server (SIGKILL); its store stays for a restart. */
  kill(): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  /** Kills it and removes its store. */
  close(): Promise<void>;
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function accepts(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** `port`: a given one (e.g. where a lab already tries to connect); default a free one. */
export async function startNats(port = freePort()): Promise<NatsServer> {
  const storeDir = await Deno.makeTempDir({ prefix: "lab-nats-" });
  let child: Deno.ChildProcess | undefined;
  const spawn = async () => {
    try {
      child = new Deno.Command("nats-server", {
        args: ["-js", "-sd", storeDir, "-a", "127.0.0.1", "-p", String(port)],
        stdout: "null",
        stderr: "null",
      }).spawn();
    } catch (e) {
      throw new Error(
        `cannot start nats-server (${
          (e as Error).message
        }): install it (apt-get install nats-server)`,
      );
    }
    await waitFor(() => accepts(port), `nats-server to listen on ${port}`, 30_000, 50);
  };
  const kill = async () => {
    if (!child) return;
    try {
      child.kill("SIGKILL");
    } catch { /* gone already */ }
    await child.status;
    child = undefined;
  };
  await spawn();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    kill,
    restart: spawn,
    async close() {
      await kill();
      await Deno.remove(storeDir, { recursive: true }).catch(() => {});
    },
  };
}
