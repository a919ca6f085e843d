/**
 * The Python environment of the peer baselines (bench/peers/*.py): a virtual environment in
 * .peers-venv/ (git-ignored) made with the system Python and pip the first time
 * `deno task bench --peers` needs it. Never used by `deno task test`.
 */
const ROOT = new URL("..", import.meta.url).pathname;
export const VENV_DIR = `${ROOT}.peers-venv`;
export const VENV_PYTHON = `${VENV_DIR}/bin/python`;
const PACKAGES = ["jax", "numba", "numpy"];

async function run(cmd: string, args: string[]): Promise<boolean> {
  const out = await new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  return out.success;
}

async function hasPackages(): Promise<boolean> {
  try {
    const out = await new Deno.Command(VENV_PYTHON, {
      args: ["-c", "import jax, numba, numpy"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Path of the venv's python with jax, numba and numpy importable; creates it if missing. */
export async function ensurePeersVenv(log: (line: string) => void): Promise<string> {
  if (await hasPackages()) return VENV_PYTHON;
  log(`creating the peers' Python environment in .peers-venv/ (pip install ${PACKAGES.join(" ")})`);
  if (!await run("/usr/bin/python3", ["-m", "venv", VENV_DIR])) {
    throw new Error(
      "bench --peers: `/usr/bin/python3 -m venv` failed (on Debian: apt-get install -y python3-venv)",
    );
  }
  if (!await run(VENV_PYTHON, ["-m", "pip", "install", "--quiet", ...PACKAGES])) {
    throw new Error(`bench --peers: pip install ${PACKAGES.join(" ")} into .peers-venv/ failed`);
  }
  if (!await hasPackages()) throw new Error("bench --peers: jax or numba does not import");
  return VENV_PYTHON;
}
