/** `lab list` and `lab show`: the experiment catalog, printed from the schemas. */
import { EXPERIMENTS, getExperiment } from "../experiments/registry.ts";
import { describeAllowed, type ParamSpec } from "../experiments/schema.ts";

export function listText(): string {
  const rows = Object.values(EXPERIMENTS).map((e) => `${e.id.padEnd(22)} ${e.title}`);
  return rows.join("\n") + "\n";
}

function defaultText(spec: ParamSpec): string {
  let text = JSON.stringify(spec.default);
  if (spec.kind === "schedule" && spec.defaultBy) {
    const by = Object.entries(spec.defaultBy.values)
      .map(([k, v]) => `${JSON.stringify(v)} when ${spec.defaultBy!.param}=${k}`).join("; ");
    text += ` (${by})`;
  }
  return text;
}

export function showText(id: string): string {
  const e = getExperiment(id);
  const lines = [
    `${e.id}: ${e.title}`,
    `paper: ${e.paper}`,
    `notes: ../shared/papers/${e.notes}`,
    `run defaults: --steps=${e.defaults.steps} --every=${e.defaults.every} --replicas=${e.defaults.replicas}`,
    "",
    "parameters:",
  ];
  for (const [name, spec] of Object.entries(e.params)) {
    lines.push(`  --${name}=${defaultText(spec)}`);
    lines.push(`      ${spec.doc}`);
    lines.push(`      allowed: ${describeAllowed(spec)}`);
    if (spec.kind === "enum" && spec.valueDocs) {
      for (const [v, doc] of Object.entries(spec.valueDocs)) lines.push(`        ${v}: ${doc}`);
    }
    if (spec.appliesTo) lines.push(`      used by: ${spec.appliesTo.join(", ")}`);
    if (spec.source) lines.push(`      source: ${spec.source}`);
  }
  lines.push("", "metrics:");
  for (const m of e.metrics) lines.push(`  ${m.name.padEnd(20)} ${m.doc}`);
  for (const f of e.frames ?? []) lines.push(`  frame ${f.name.padEnd(14)} ${f.doc}`);
  return lines.join("\n") + "\n";
}
