/**
 * An outside service reading the lab's records straight from NATS JetStream, written from
 * docs/protocol.md ("Records on NATS subjects"): every run's records are msgpack on
 * `lab.runs.<run>.records` in the stream LAB_RECORDS, one sequence per shard (headers
 * Lab-Shard, Lab-Shards), de-duplicated here by seq; seq 0 marks a record outside the
 * sequence (e.g. a `resumed` event).
 *
 *   deno run -A examples/nats_subscriber.ts nats://127.0.0.1:4222 [RUN|*] [METRIC]
 *
 * Prints one line per snapshot (step and replica 0's METRIC, default train_loss) and per
 * event or status; given a RUN, exits when all its shards have ended. (Inside this repo the
 * packages come from package.json; elsewhere import "npm:@nats-io/transport-node@3.4.0",
 * "npm:@nats-io/jetstream@3.4.0" and "npm:msgpackr@2.1.3".)
 */
import { connect } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { Packr } from "msgpackr";

const [url = "nats://127.0.0.1:4222", run = "*", metric = "train_loss"] = Deno.args;
const nc = await connect({ servers: url });
// An ordered consumer: ephemeral, in stream order, from the first record still stored.
const consumer = await jetstream(nc).consumers.get("LAB_RECORDS", {
  filter_subjects: `lab.runs.${run}.records`,
  deliver_policy: DeliverPolicy.All,
});
// Typed arrays (the metrics: one Float32Array per metric, a value per replica) stay typed.
const unpack = new Packr({ moreTypes: true, useRecords: false, mapsAsObjects: true });
const seen = new Set<string>(); // `<run>.<shard>.<seq>` already printed
const ended = new Map<string, Set<string>>(); // run → shards that ended
const terminal = new Set(["finished", "failed", "stopped"]);

for await (const m of await consumer.consume()) {
  const r = unpack.unpack(m.data);
  const id = m.subject.split(".")[2];
  const shard = m.headers?.get("Lab-Shard") ?? "0";
  const shards = Number(m.headers?.get("Lab-Shards") ?? "1");
  if (r.seq > 0) {
    const key = `${id}.${shard}.${r.seq}`;
    if (seen.has(key)) continue; // a record published again by a worker that resumed the job
    seen.add(key);
  }
  const where = `${id} shard ${shard}`;
  if (r.type === "snapshot") {
    console.log(`${where} step ${r.step} ${metric}[0]=${r.metrics[metric]?.[0]}`);
  } else if (r.type === "event") {
    console.log(`${where} event ${r.event.type} at step ${r.event.step}`);
  } else if (r.type === "status") {
    console.log(`${where} ${r.status} at step ${r.step}${r.error ? `: ${r.error}` : ""}`);
    if (terminal.has(r.status)) {
      const done = ended.get(id) ?? new Set();
      ended.set(id, done.add(shard));
      if (run !== "*" && done.size === shards) break;
    }
  }
}
await nc.close();
