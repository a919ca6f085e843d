/**
 * The HTTP client as the CLI uses it: a refusal the user can fix (bad field, wrong token,
 * unknown run) becomes a one-line UsageError (exit 2); an unreachable lab says so plainly.
 */
import { LabApiError, LabHttp as Client } from "../../client/http.ts";
import { UsageError } from "./args.ts";

function explain(e: unknown, base: string): never {
  if (e instanceof LabApiError) {
    const fields = e.errors.map((f) => `${f.field}: ${f.message}`).join("; ");
    const hint = e.status === 401 ? " (pass --token=… or set LAB_TOKEN)" : "";
    throw new UsageError(`the lab refused: ${fields || e.message}${hint}`);
  }
  if (e instanceof TypeError) {
    throw new Error(
      `cannot reach the lab at ${base}: ${e.message} (is \`deno task serve\` running?)`,
    );
  }
  throw e;
}

/** The same calls as client/http.ts, with errors turned into CLI messages. */
export class LabHttp {
  #c: Client;
  constructor(readonly base: string, token?: string) {
    this.#c = new Client(base, token);
  }
  submit(spec: unknown) {
    return this.#c.submit(spec).catch((e) => explain(e, this.base));
  }
  runs() {
    return this.#c.runs().catch((e) => explain(e, this.base));
  }
  run(id: string) {
    return this.#c.run(id).catch((e) => explain(e, this.base));
  }
  importLog(bytes: Uint8Array) {
    return this.#c.importLog(bytes).catch((e) => explain(e, this.base));
  }
  stop(id: string) {
    return this.#c.stop(id).catch((e) => explain(e, this.base));
  }
}
