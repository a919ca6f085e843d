/**
 * `deno task lab <command>`: run experiments headless, inspect the catalog, export logs.
 * User errors print one line and exit with status 2; no stack traces.
 */
import { parseCliArgs, UsageError } from "./args.ts";
import { listText, showText } from "./catalog.ts";
import { specFromFlags } from "./spec_from_flags.ts";
import { runLocal } from "./run_local.ts";
import { SpecError } from "../experiments/schema.ts";
import { iterateRunLog, readRunLogHeader, type ScanReport } from "../runs/runlog.ts";
import { csvHeader, recordToJson, snapshotCsvRows } from "../runs/export.ts";
import { BackendUnavailableError } from "../engine/open.ts";
import { runRemote, serverFlags } from "./remote.ts";
import { watch } from "./watch.ts";

const USAGE = `usage: deno task lab <command>
  list                                   experiments
  show EXPERIMENT                        parameters (defaults, ranges, docs) and metrics
  run EXPERIMENT [--PARAM=VALUE ...]     run headless
      [--replicas=R] [--steps=N] [--every=K] [--backend=auto|wasm|webgpu|reference]
      [--json] [--out=DIR] [--quiet]
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
      // Streamed from the log in chunks (export.ts formats), whatever its size.
      const report: ScanReport = { damage: [], validEnd: 0 };
      const enc = new TextEncoder();
      const write = (text: string) => {
        const bytes = enc.encode(text);
        let n = 0;
        while (n < bytes.length) n += Deno.stdout.writeSync(bytes.subarray(n));
      };
      try {
        const { header } = await readRunLogHeader(rest[0]);
        if (format === "csv") write(csvHeader(header.metrics));
        else write(JSON.stringify(recordToJson(header)) + "\n");
        let out = "";
        for await (const { record: r } of iterateRunLog(rest[0], { report })) {
          if (format === "jsonl") out += JSON.stringify(recordToJson(r)) + "\n";
          else if (r.type === "snapshot") {
            out += snapshotCsvRows(header.metrics, r.step, r.wall_ms, r.metrics);
          }
          if (out.length > 65536) write(out), out = "";
        }
        write(out);
      } catch (e) {
        throw new UsageError(
          e instanceof Deno.errors.NotFound ? `no such file: ${rest[0]}` : (e as Error).message,
        );
      }
      if (report.damage.length) {
        const where = report.damage.map((d) => `${d.length} bytes at offset ${d.offset}`);
        console.error(
          `warning: ${report.damage.length} damaged range(s) skipped (${where.join(", ")}); ` +
            "every intact record before and after was exported",
        );
      }
      if (report.tornAt !== undefined) {
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
