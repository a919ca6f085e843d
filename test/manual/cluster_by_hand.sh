#!/usr/bin/env bash
# Issue 15's done-when, by hand: nats-server -js, a coordinator and two workers, a sweep (as
# the dashboard posts it) sharded across both, one worker killed with kill -9 mid-shard: the
# sweep finishes and its CSV (wall_ms dropped) equals the same sweep on one box without NATS.
# Usage: test/manual/cluster_by_hand.sh . (from the repository root, with nats-server installed;
# not part of deno task test)
set -euo pipefail
repo=$1; cd "$repo"
tmp=$(mktemp -d); np=14333; cp=18431; bp=18432
nats-server -js -sd $tmp/nats -a 127.0.0.1 -p $np > $tmp/nats.log 2>&1 & nats=$!
sleep 1
deno run -A server/main.ts --port=$cp --data=$tmp/coord --nats=nats://127.0.0.1:$np --job-ack-wait=5 --checkpoint-interval=1 > $tmp/coord.log 2>&1 & coord=$!
deno run -A server/worker_main.ts --nats=nats://127.0.0.1:$np --backend=wasm --capacity=1 > $tmp/w1.log 2>&1 & w1=$!
deno run -A server/worker_main.ts --nats=nats://127.0.0.1:$np --backend=wasm --capacity=1 > $tmp/w2.log 2>&1 & w2=$!
url=http://127.0.0.1:$cp
for i in $(seq 1 200); do curl -sf $url/api/health >/dev/null && break; sleep 0.2; done
for i in $(seq 1 200); do n=$(curl -sf $url/api/workers | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["workers"] if isinstance(d,dict) else d))'); [ "$n" = 2 ] && break; sleep 0.3; done
echo "workers live: $n"
spec='{"experiment":"shape-matters","params":{"algo":"label-noise","d":60,"n":30},"grid":{"delta":"0.25,0.5,1,2","lr":"0.005,0.01"},"seeds":4,"steps":3000000,"every":10000,"backend":"wasm"}'
id=$(curl -sf -H 'content-type: application/json' -d "$spec" $url/api/runs | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf $url/api/runs/$id | python3 -c 'import json,sys; d=json.load(sys.stdin); print("keys:", sorted(d.keys())[:30]); print("cluster:", json.dumps(d.get("cluster") or d.get("header",{}).get("cluster") or d.get("adapter")))' || true
sleep 4
curl -sf $url/api/workers | python3 -c 'import json,sys; d=json.load(sys.stdin); [print("worker", w.get("id"), "running", w.get("running")) for w in (d["workers"] if isinstance(d,dict) else d)]'
kill -9 $w1; echo "killed worker 1 (kill -9) at step $(curl -sf $url/api/runs/$id | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])')"
for i in $(seq 1 400); do st=$(curl -sf $url/api/runs/$id | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'); [ "$st" = finished -o "$st" = failed ] && break; sleep 0.5; done
echo "sweep status: $st"
curl -sf $url/api/runs/$id/metrics.csv | cut -d, -f1,3- > $tmp/cluster.csv
curl -sf $url/api/runs/$id | python3 -c 'import json,sys; d=json.load(sys.stdin); [print("event:", json.dumps(e.get("event", e))) for e in d.get("events", []) if "resumed" in json.dumps(e)]' 
kill $w2 $coord 2>/dev/null; wait $w2 $coord 2>/dev/null || true
# The same sweep on one box, no NATS.
deno run -A server/main.ts --port=$bp --data=$tmp/box > $tmp/box.log 2>&1 & box=$!
burl=http://127.0.0.1:$bp
for i in $(seq 1 200); do curl -sf $burl/api/health >/dev/null && break; sleep 0.2; done
bid=$(curl -sf -H 'content-type: application/json' -d "$spec" $burl/api/runs | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
for i in $(seq 1 600); do st=$(curl -sf $burl/api/runs/$bid | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'); [ "$st" = finished -o "$st" = failed ] && break; sleep 0.5; done
curl -sf $burl/api/runs/$bid/metrics.csv | cut -d, -f1,3- > $tmp/box.csv
kill $box $nats 2>/dev/null; wait $box $nats 2>/dev/null || true
echo "one-box status: $st; CSV lines: $(wc -l < $tmp/cluster.csv) vs $(wc -l < $tmp/box.csv)"
if cmp -s $tmp/cluster.csv $tmp/box.csv; then echo "CSV equal"; rc=0; else echo "CSV DIFFERS"; diff $tmp/cluster.csv $tmp/box.csv | head -5; rc=1; fi
rm -rf $tmp
exit $rc
