#!/usr/bin/env python3
"""Follow one run of the lab from Python: print each snapshot, exit when the run ends.

Written from docs/protocol.md alone. Needs only Debian's python3-msgpack and
python3-websockets (apt-get install python3-msgpack python3-websockets).

    python3 examples/python_subscriber.py RUN_ID [--url http://127.0.0.1:8420] [--token T]
    python3 examples/python_subscriber.py [--latest]       (the most recent run)

Exit status: 0 when the run finished, 1 when it failed, was stopped or interrupted,
2 for usage errors or when the run does not exist.
"""

import argparse
import array
import base64
import asyncio
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

try:
    import msgpack
    import websockets
except ImportError as e:  # pragma: no cover - message for people without the packages
    sys.exit(f"missing {e.name}: apt-get install python3-msgpack python3-websockets")

# msgpackr "moreTypes": typed arrays are ext type 0x74; the first data byte says which array,
# the rest are its elements, little-endian.
TYPED_ARRAY_EXT = 0x74
TYPECODES = {0: "b", 1: "B", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d", 9: "q", 10: "Q"}
TERMINAL = {"finished", "failed", "stopped", "interrupted"}


def ext_hook(code, data):
    if code == TYPED_ARRAY_EXT and data[0] in TYPECODES:
        values = array.array(TYPECODES[data[0]])
        values.frombytes(data[1:])
        if sys.byteorder == "big":
            values.byteswap()
        return values
    return msgpack.ExtType(code, data)


def decode(payload):
    return msgpack.unpackb(payload, ext_hook=ext_hook, raw=False, strict_map_key=False)


def mean(values):
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    return sum(finite) / len(finite) if finite else float("nan")


def stream_url(base):
    parts = urllib.parse.urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, "/api/stream", "", ""))


def stream_protocols(token):
    """The token as a WebSocket subprotocol, beside lab.stream (never in the URL: logs keep it)."""
    if not token:
        return None
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return ["lab.stream", "lab.bearer." + encoded]


def latest_run(base, token):
    req = urllib.request.Request(base.rstrip("/") + "/api/runs")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req) as res:
            runs = json.load(res)
    except urllib.error.HTTPError as e:
        sys.exit(f"error: the lab at {base} answered HTTP {e.code} (wrong or missing --token?)")
    except OSError as e:
        sys.exit(unreachable(base, e))
    if not runs:
        sys.exit("the lab has no runs yet")
    return runs[-1]["id"]


def unreachable(base, e):
    reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
    return f"error: cannot reach the lab at {base} ({reason}); is `deno task serve` running?"


async def follow(base, token, run):
    last_seq = 0  # resume point: after a dropped connection we ask for seq > last_seq
    status = None
    attempts = 0
    connected = False  # reconnect only to a lab that answered once
    while True:
        try:
            async with websockets.connect(stream_url(base), subprotocols=stream_protocols(token),
                                          max_size=None) as ws:
                attempts = 0
                connected = True
                await ws.send(json.dumps({
                    "type": "subscribe", "runs": [run], "since": {run: last_seq}, "frames": False,
                }))
                async for payload in ws:
                    msg = decode(payload)
                    kind = msg.get("type")
                    if kind == "error":
                        print(f"error: {msg['code']}: {msg['message']}", file=sys.stderr)
                        if msg["code"] == "unknown_run":
                            return 2
                        continue
                    if kind == "hello":
                        h = msg["header"]
                        print(f"# {run}: {h['spec']['experiment']} on {h['backend']} "
                              f"({h['adapter']}), metrics {', '.join(h['metrics'])}", flush=True)
                        continue
                    seq = msg.get("seq")
                    if seq is not None:
                        if seq <= last_seq:
                            continue  # already seen (cannot happen with a correct since)
                        last_seq = seq
                    if kind == "skipped":
                        last_seq = max(last_seq, msg["to_seq"])
                        print(f"# skipped seq {msg['from_seq']}..{msg['to_seq']} ({msg['reason']})")
                    elif kind == "snapshot":
                        cols = " ".join(f"{k}={mean(v):.6g}" for k, v in msg["metrics"].items())
                        print(f"step {msg['step']} seq {seq} {cols}", flush=True)
                    elif kind == "event":
                        print(f"# event {json.dumps(msg['event'])}", flush=True)
                    elif kind == "status":
                        status = msg["status"]
                        extra = f": {msg['error']}" if msg.get("error") else ""
                        print(f"# status {status} at step {msg['step']}{extra}", flush=True)
                        if status in TERMINAL:
                            return 0 if status == "finished" else 1
        except websockets.exceptions.InvalidHandshake as e:
            # 401: missing or wrong token (websockets < 14 says status_code, later response)
            http = getattr(e, "status_code", None) or getattr(getattr(e, "response", None),
                                                              "status_code", None)
            if http == 401:
                print("error: the lab refused the stream (HTTP 401): wrong or missing --token?",
                      file=sys.stderr)
            else:
                print(f"error: {e}", file=sys.stderr)
            return 2
        except (OSError, websockets.exceptions.ConnectionClosed) as e:
            if not connected:
                print(unreachable(base, e), file=sys.stderr)
                return 1
            attempts += 1
            if attempts > 5:
                print(f"error: lost the lab at {base}: {e}", file=sys.stderr)
                return 1
            print(f"# connection lost ({e}); resuming after seq {last_seq}", file=sys.stderr)
            await asyncio.sleep(0.5 * attempts)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", help="run id (see GET /api/runs); default: the latest")
    p.add_argument("--latest", action="store_true", help="follow the most recent run (default)")
    p.add_argument("--url", default="http://127.0.0.1:8420", help="the lab's base URL")
    p.add_argument("--token", default=os.environ.get("LAB_TOKEN"),
                   help="access token, if the lab needs one (default: $LAB_TOKEN)")
    args = p.parse_args()
    run = args.run or latest_run(args.url, args.token)
    sys.exit(asyncio.run(follow(args.url, args.token, run)))


if __name__ == "__main__":
    main()
