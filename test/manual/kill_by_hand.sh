#!/usr/bin/env bash
# Issue 11's done-when, by hand: serve with --checkpoint-interval=2, start the Shape Matters
# preset's four runs, kill -9 the server after a few seconds, start it again, wait for the
# runs to finish, and compare each CSV (wall_ms column dropped) with the same spec run
# without interruption. Usage: test/manual/kill_by_hand.sh . (from the repository root; not
# part of deno task test). KILL_AFTER=SECONDS (default 5) sets when the kill comes.
set -euo pipefail
repo=$1; cd "$repo"
data=$(mktemp -d); port=18765; url=http://127.0.0.1:$port
serve() { deno run -A server/main.ts --port=$port --data=$data --checkpoint-interval=2 "$@" > $data/server.log 2>&1 & echo $!; }
waitup() { for i in $(seq 1 200); do curl -sf $url/api/health >/dev/null && return; sleep 0.2; done; echo "no server"; exit 1; }
specs=()
for algo in gd label-noise minibatch-noise gaussian; do
  specs+=("{\"experiment\":\"shape-matters\",\"params\":{\"algo\":\"$algo\",\"seed\":123},\"steps\":300000,\"every\":1000,\"replicas\":4}")
done
pid=$(serve); waitup
ids=()
for s in "${specs[@]}"; do
  ids+=($(curl -sf -H 'content-type: application/json' -d "$s" $url/api/runs | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'))
done
sleep ${KILL_AFTER:-5}
curl -sf $url/api/runs | python3 -c 'import json,sys; d=json.load(sys.stdin); [print("before kill:", r["id"], r["status"], r["step"]) for r in (d["runs"] if isinstance(d,dict) else d)]'
kill -9 $pid; sleep 0.5
ls $data/runs | grep -c ckpt | sed 's/^/checkpoints on disk at the kill: /'
pid=$(serve); waitup
done_all() { curl -sf $url/api/runs | python3 -c 'import json,sys; d=json.load(sys.stdin); rs=(d["runs"] if isinstance(d,dict) else d); sys.exit(0 if all(r["status"]=="finished" for r in rs) else 1)'; }
for i in $(seq 1 600); do done_all && break; sleep 1; done
curl -sf $url/api/runs | python3 -c 'import json,sys; d=json.load(sys.stdin); [print("after restart:", r["id"], r["status"], r["step"]) for r in (d["runs"] if isinstance(d,dict) else d)]'
# The same specs, uninterrupted, on the same server.
ref=()
for s in "${specs[@]}"; do
  ref+=($(curl -sf -H 'content-type: application/json' -d "$s" $url/api/runs | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'))
done
for i in $(seq 1 600); do done_all && break; sleep 1; done
fail=0
for k in 0 1 2 3; do
  a=$(curl -sf $url/api/runs/${ids[$k]}/metrics.csv | cut -d, -f1,3- | sha256sum)
  b=$(curl -sf $url/api/runs/${ref[$k]}/metrics.csv | cut -d, -f1,3- | sha256sum)
  rows=$(curl -sf $url/api/runs/${ids[$k]}/metrics.csv | wc -l)
  if [ "$a" == "$b" ]; then echo "run $k: CSV equal ($rows lines)"; else echo "run $k: CSV DIFFERS"; fail=1; fi
done
grep -c resumed $data/server.log | sed 's/^/resume lines in the second server log: /' || true
curl -sf "$url/api/runs/${ids[1]}" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("events of run 1:", [e["event"]["type"] if "event" in e else e.get("type") for e in d.get("events",[])][:6])'
kill $pid; wait $pid 2>/dev/null || true
rm -rf $data
exit $fail
