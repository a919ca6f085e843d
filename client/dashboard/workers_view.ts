/**
 * The workers of a multi-box lab (GET /api/workers; README "Several boxes"): whether NATS is
 * connected, then one line per live worker: box and backend (adapter and jobs on hover), jobs
 * running of its capacity, age of its last heartbeat. Shown only when the lab is a coordinator.
 */
import { api, type NatsHealth, type WorkerInfo } from "./api.ts";
import { clear, h } from "./dom.ts";

export interface WorkersView {
  el: HTMLElement;
  refresh(): Promise<void>;
}

export function workersView(): WorkersView {
  const status = h("p.workers-nats.muted", {}, "NATS: …");
  const list = h("ul.workers-list", {});
  const el = h("section.card.workers", {}, h("h3", {}, "Workers"), status, list);
  const show = (nats: NatsHealth | undefined, workers: WorkerInfo[] | undefined) => {
    status.textContent = !nats
      ? "NATS: unknown"
      : nats.connected
      ? `NATS: connected (${nats.url})`
      : `NATS down: ${nats.error ?? nats.url} (runs are served, none can start)`;
    status.classList.toggle("down", nats !== undefined && !nats.connected);
    clear(list);
    if (!workers) return;
    if (workers.length === 0) {
      list.append(h("li.muted", {}, "no worker is live: runs wait for one (deno task worker)"));
    }
    const now = Date.now();
    for (const w of workers) {
      const age = Math.max(0, Math.round((now - w.heartbeat) / 1000));
      list.append(h(
        "li.worker",
        {
          title: `${w.id}\n${w.adapter}${
            w.running.length ? `\njobs: ${w.running.join(", ")}` : ""
          }`,
        },
        h("span.worker-box", {}, w.box),
        h("span.muted", {}, ` ${w.backend}`),
        h("span.worker-load", {}, `${w.running.length}/${w.capacity} jobs · ${age} s ago`),
      ));
    }
  };
  return {
    el,
    async refresh() {
      const health = await api.health().catch(() => null);
      const workers = health?.nats?.connected
        ? await api.workers().catch(() => undefined)
        : undefined;
      show(health?.nats, workers);
    },
  };
}
