/**
 * `deno task lab <command>`: run experiments headless, inspect the catalog, export logs.
 * User errors print one line and exit with status 2; no stack traces.
 */
import { applyWasmFmaFlag, parseCliArgs, UsageError } from "./args.ts";
import { listText, showText } from "./catalog.ts";
import { RUN_OPTIONS, runBodyFromFlags } from "./spec_from_flags.ts";
import { validateRunSpec } from "../experiments/registry.ts";
import { LabHttp } from "./lab_http.ts";
import { resumeLocal, runLocal } from "./run_local.ts";
import { checkpointIntervalMs } from "../runs/checkpoints.ts";
import { SpecError } from "../experiments/schema.ts";
import { iterateRunLog, readRunLogHeader, type ScanReport } from "../runs/runlog.ts";
import { csvChunks, recordToJson } from "../runs/export.ts";
import { BackendUnavailableError } from "../engine/open.ts";
import { runRemote, serverFlags } from "./remote.ts";
import { watch } from "./watch.ts";

const USAGE = `usage: deno task lab <command>
  list                                   experiments
  show EXPERIMENT                        parameters (defaults, ranges, docs) and metrics
  run EXPERIMENT [--PARAM=VALUE ...]     run headless (see: run EXPERIMENT --help)
      [--replicas=R] [--steps=N] [--every=K] [--backend=auto|wasm|webgpu|reference]
      [--PARAM=A,B,C | --PARAM=LO..HI:N[:log]] [--seeds=K] [--zip=P,Q]   a sweep
      [--name=NAME] [--tag=TAG ...] [--note=TEXT]
      [--json] [--out=DIR [--checkpoint-interval=SECONDS]] [--quiet] [--threads=N]
      [--wasm-fma=auto|off]             off: the strict wasm build instead of FMA
                                         with --out: log and checkpoints in DIR (every
                                         60 s of compute and on Ctrl-C)
      [--server=URL [--token=TOKEN]]     submit to a running lab and follow it there
  resume LOGFILE [--json] [--quiet] [--threads=N] [--wasm-fma=auto|off]
                                         continue a run written with --out from its
                                         checkpoint
  watch [RUN] [--server=URL] [--token=TOKEN] [--once]
                                         live progress of a lab's runs (default server
                                         http://127.0.0.1:8420; token also from LAB_TOKEN)
  export LOGFILE [--format=csv|jsonl]    print a run log as CSV or JSON Lines
  import LOGFILE [--server=URL] [--token=TOKEN]
                                         add a run log (from run --out) to a running lab
`;

const WATCH_USAGE = `usage: deno task lab watch [RUN] [--server=URL] [--token=TOKEN] [--once]
  Without RUN: a table of the lab's runs, redrawn until Ctrl-C (--once: print it and exit).
  With RUN: that run's progress line and events until it ends (exit 0 if it finished).
  --server defaults to http://127.0.0.1:8420; the token may also come from LAB_TOKEN.`;

function runUsage(experiment?: string): string {
  const options = Object.entries(RUN_OPTIONS)
    .map(([k, doc]) => `  --${k.padEnd(10)} ${doc}`).join("\n");
  return `usage: deno task lab run EXPERIMENT [--PARAM=VALUE ...] [options]
Options:
${options}
A per-replica parameter takes a list (--delta=0.25,0.5,1,2) or a range (--lr=1e-3..1e-1:5:log,
five log-spaced values; --lr=0..1:5 is linear): the run is the grid of every list × --seeds.
See docs/sweeps.md.
${experiment ? "\n" + showText(experiment).trimEnd() : "Experiments:\n" + listText().trimEnd()}`;
}

/** `--threads=N` of run and resume: undefined when absent (default: every core). */
function threadsFlag(raw: string | true | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw === true || !Number.isInteger(n) || n < 1 || n > 1024) {
    throw new UsageError(`--threads must be an integer in [1, 1024], got ${raw}`);
  }
  return n;
}

async function main(argv: string[]): Promise<number> {
  const { positional, flags, all } = parseCliArgs(argv);
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
      if (flags.has("help")) {
        console.log(runUsage(rest[0]));
        return 0;
      }
      if (!rest[0]) throw new UsageError("run needs an experiment id (see: deno task lab list)");
      const body = runBodyFromFlags(rest[0], flags, all, rest[1]);
      if (rest.length > 1) {
        throw new UsageError(
          `unexpected argument ${JSON.stringify(rest[1])}: options take "=", e.g. --lr=0.1`,
        );
      }
      const spec = validateRunSpec(body);
      const remote = serverFlags(flags);
      if (remote.server) {
        if (flags.has("out")) {
          throw new UsageError("--out is for local runs; the lab keeps the log");
        }
        if (flags.has("threads")) {
          throw new UsageError(
            "--threads is for local runs; the lab uses its own (serve --threads)",
          );
        }
        if (flags.has("wasm-fma")) {
          throw new UsageError(
            "--wasm-fma is for local runs; the lab uses its own (serve --wasm-fma)",
          );
        }
        return await runRemote(spec, body, {
          server: remote.server,
          token: remote.token,
          json: flags.has("json"),
          quiet: flags.has("quiet"),
        });
      }
      applyWasmFmaFlag(flags.get("wasm-fma"));
      const out = flags.get("out");
      const chunk = flags.get("chunk-ms");
      return await runLocal(spec, {
        json: flags.has("json"),
        quiet: flags.has("quiet"),
        out: typeof out === "string" ? out : undefined,
        chunkMs: typeof chunk === "string" ? Number(chunk) : undefined,
        checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
        threads: threadsFlag(flags.get("threads")),
      });
    }
    case "resume": {
      if (!rest[0]) throw new UsageError("resume needs a run log path (written with --out)");
      try {
        await Deno.stat(rest[0]);
      } catch {
        throw new UsageError(`no such file: ${rest[0]}`);
      }
      applyWasmFmaFlag(flags.get("wasm-fma"));
      return await resumeLocal(rest[0], {
        json: flags.has("json"),
        quiet: flags.has("quiet"),
        checkpointIntervalMs: checkpointIntervalMs(flags.get("checkpoint-interval")),
        threads: threadsFlag(flags.get("threads")),
      });
    }
    case "watch": {
      if (flags.has("help")) {
        console.log(WATCH_USAGE);
        return 0;
      }
      const remote = serverFlags(flags);
      return await watch({
        server: remote.server ?? "http://127.0.0.1:8420",
        token: remote.token,
        run: rest[0],
        once: flags.has("once"),
      });
    }
    case "import": {
      if (!rest[0]) throw new UsageError("import needs a run log path (written by run --out=DIR)");
      const remote = serverFlags(flags);
      const server = remote.server ?? "http://127.0.0.1:8420";
      let bytes;
      try {
        bytes = await Deno.readFile(rest[0]);
      } catch (e) {
        throw new UsageError(
          e instanceof Deno.errors.NotFound ? `no such file: ${rest[0]}` : (e as Error).message,
        );
      }
      const id = await new LabHttp(server, remote.token).importLog(bytes);
      console.log(`imported ${id} into ${server}`);
      return 0;
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
        if (format === "csv") {
          const records = async function* () {
            const all = iterateRunLog(rest[0], { report, blocks: true });
            for await (const { record } of all) yield record;
          };
          for await (const piece of csvChunks(header, records())) write(piece);
        } else {
          write(JSON.stringify(recordToJson(header)) + "\n");
          let out = "";
          for await (const { record: r } of iterateRunLog(rest[0], { report })) {
            out += JSON.stringify(recordToJson(r)) + "\n";
            if (out.length > 65536) write(out), out = "";
          }
          write(out);
        }
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
      return command || flags.has("help") ? 0 : 2;
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
