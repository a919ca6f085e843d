/**
 * `deno task lab <command>`: run experiments headless, inspect the catalog, export logs.
 * User errors print one line and exit with status 2; no stack traces.
 */
import { parseCliArgs, UsageError } from "./args.ts";
import { listText, showText } from "./catalog.ts";
import { specFromFlags } from "./spec_from_flags.ts";
import { resumeLocal, runLocal } from "./run_local.ts";
import { checkpointIntervalMs } from "../runs/checkpoints.ts";
import { SpecError } from "../experiments/schema.ts";
import { readRunLog } from "../runs/runlog.ts";
import { recordsToCsv, recordToJson } from "../runs/export.ts";
import { BackendUnavailableError } from "../engine/open.ts";
import { runRemote, serverFlags } from "./remote.ts";
import { watch } from "./watch.ts";

const USAGE = `usage: deno task lab <command>
  list                                   experiments
  show EXPERIMENT                        parameters (defaults, ranges, docs) and metrics
  run EXPERIMENT [--PARAM=VALUE ...]     run headless
      [--replicas=R] [--steps=N] [--every=K] [--backend=auto|wasm|webgpu|reference]
      [--json] [--out=DIR [--checkpoint-interval=SECONDS]] [--quiet]
                                         with --out: log and checkpoints in DIR (every
                                         60 s of compute and on Ctrl-C)
  resume LOGFILE [--json] [--quiet]      continue a run written with --out from its
                                         checkpoint
      [--server=URL [--token=TOKEN]]     submit to a running lab and follow it there
  watch [RUN] [--server=URL] [--token=TOKEN] [--once]
                                         live progress of a lab's runs (default server
                                         http://127.0.0.1:8420; token also from LAB_TOKEN)
  export LOGFILE [--format=csv|jsonl]    print a run log as CSV or JSON Lines
`;

async function main(argv: string[]): Promise<number> {
  const { positional, flags } = parseCliArgs(argv);
  const [command, ...rest] = positional;
  switch (command) {
    case "list":
      console.log(listText().trimEnd());
      return 0;
    case "show":
      if (!rest[0]) throw new UsageError("show needs an experiment id (see: deno task lab list)");
      console.log(showText(rest[0]).trimEnd());
      return 0;
    case "run": {
      if (!rest[0]) throw new UsageError("run needs an experiment id (see: deno task lab list)");
      const spec = specFromFlags(rest[0], flags);
      const remote = serverFlags(flags);
      if (remote.server) {
        if (flags.has("out")) {
          throw new UsageError("--out is for local runs; the lab keeps the log");
        }
        return await runRemote(spec, {
          server: remote.server,
          token: remote.token,
          json: flags.has("json"),
          quiet: flags.has("quiet"),
        });
      }
      const out = flags.get("out");
      const chunk = flags.get("chunk-ms");
      return await runLocal(spec, {
        json: flags.has("json"),
        quiet: flags.has("quiet"),
        out: typeof out === "string" ? out : undefined,
        chunkMs: typeof chunk === "string" ? Number(chunk) : undefined,
        checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
      });
    }
    case "resume": {
      if (!rest[0]) throw new UsageError("resume needs a run log path (written with --out)");
      try {
        await Deno.stat(rest[0]);
      } catch {
        throw new UsageError(`no such file: ${rest[0]}`);
      }
      return await resumeLocal(rest[0], {
        json: flags.has("json"),
        quiet: flags.has("quiet"),
        checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
      });
    }
    case "watch": {
      const remote = serverFlags(flags);
      return await watch({
        server: remote.server ?? "http://127.0.0.1:8420",
        token: remote.token,
        run: rest[0],
        once: flags.has("once"),
      });
    }
    case "export": {
      if (!rest[0]) throw new UsageError("export needs a run log path");
      const format = flags.get("format") ?? "csv";
      if (format !== "csv" && format !== "jsonl") {
        throw new UsageError(`--format must be csv or jsonl, got ${format}`);
      }
      let log;
      try {
        log = await readRunLog(rest[0]);
      } catch (e) {
        throw new UsageError(
          e instanceof Deno.errors.NotFound ? `no such file: ${rest[0]}` : (e as Error).message,
        );
      }
      const enc = new TextEncoder();
      if (format === "csv") {
        Deno.stdout.writeSync(enc.encode(recordsToCsv(log.header, log.records)));
      } else {
        for (const r of [log.header, ...log.records]) {
          Deno.stdout.writeSync(enc.encode(JSON.stringify(recordToJson(r)) + "\n"));
        }
      }
      if (log.truncated) {
        console.error(
          "warning: the log ends in a partial record (crash mid-write); it was ignored",
        );
      }
      return 0;
    }
    case undefined:
    case "help":
      console.log(USAGE.trimEnd());
      return command ? 0 : 2;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (e) {
    if (e instanceof UsageError || e instanceof SpecError || e instanceof BackendUnavailableError) {
      console.error(`error: ${e.message}`);
      code = 2;
    } else {
      console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
      code = 1;
    }
  }
  Deno.exit(code);
}

export { main };
