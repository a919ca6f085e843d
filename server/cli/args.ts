/**
 * Command-line parsing for `deno task lab`: `--name=value` and bare `--flag` (a value after a
 * space is a positional argument; the commands point that out).
 * Experiment parameters are free-form flags, so a fixed option table (node:util parseArgs,
 * standing in for deno-std's flags) would reject them; this small parser keeps them.
 */
import { parseWasmFmaSetting, setWasmFmaSetting } from "../engine/wasm/builds.ts";

export interface ParsedArgs {
  positional: string[];
  /** The last value of each flag. */
  flags: Map<string, string | true>;
  /** Every value of each flag, in order (for repeatable flags such as --tag). */
  all: Map<string, (string | true)[]>;
}

export function parseCliArgs(argv: string[]): ParsedArgs {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const all = new Map<string, (string | true)[]>();
  const set = (name: string, value: string | true) => {
    flags.set(name, value);
    all.set(name, [...all.get(name) ?? [], value]);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      if (eq > 0) set(a.slice(2, eq), a.slice(eq + 1));
      else set(a.slice(2), true);
    } else positional.push(a);
  }
  return { positional, flags, all };
}

/** Thrown for user errors: the CLI prints the message alone and exits with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Help text of `--wasm-fma`, shared by serve, worker, run and resume. */
export const WASM_FMA_HELP =
  "auto (the FMA build of the wasm kernels where the engine has relaxed SIMD) or off (the " +
  "strict build: mul then add, the same numbers on every machine); also LAB_WASM_FMA";

/**
 * `--wasm-fma=auto|off` (serve, worker, run, resume): sets the process's choice of wasm
 * kernel build (server/engine/wasm/builds.ts), which its Workers inherit. Absent: unchanged.
 */
export function applyWasmFmaFlag(raw: string | true | undefined): void {
  if (raw === undefined) return;
  if (raw === true) throw new UsageError("--wasm-fma needs a value: --wasm-fma=off or =auto");
  try {
    setWasmFmaSetting(parseWasmFmaSetting(raw, "--wasm-fma"));
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/**
 * The flags of a command with a fixed option table (the server, the worker): `--help`, or stray
 * words, print `usage` and the caller exits with `exit` (0 for --help, 2 for stray words); a flag
 * not in `known` is a UsageError naming it.
 */
export function commandFlags(
  argv: string[],
  known: readonly string[],
  usage: string,
): { flags: Map<string, string | true> } | { exit: number } {
  const { flags, positional } = parseCliArgs(argv);
  if (flags.has("help") || positional.length) {
    console.log(usage);
    return { exit: positional.length ? 2 : 0 };
  }
  for (const k of flags.keys()) {
    if (k !== "help" && !known.includes(k)) throw new UsageError(`unknown option --${k}\n${usage}`);
  }
  return { flags };
}

/**
 * Runs a command's main and exits with its status: an error is one line on stderr, status 2
 * for a UsageError (the user's input) and 1 for anything else.
 */
export async function exitWith(main: (argv: string[]) => Promise<number>): Promise<never> {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (e) {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    code = e instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}

/** Edit distance counting a swap of neighbours as one edit ("detla" → "delta"). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** The closest known name, if it is close enough to be a likely typo. */
export function closest(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(name.toLowerCase(), k.toLowerCase());
    if (d < bestD) best = k, bestD = d;
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(name.length / 3)) ? best : undefined;
}
