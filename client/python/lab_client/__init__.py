"""Python client for the lab: start runs and sweeps, follow them, fetch their metrics.

Written from docs/protocol.md. HTTP goes through the standard library; the stream needs
msgpack and websockets; metrics come back as numpy arrays, or as a tidy pandas DataFrame (one
row per snapshot × replica, with the replica's setting columns) when pandas is installed.

    from lab_client import Lab
    lab = Lab("http://127.0.0.1:8420")
    run = lab.start("shape-matters", grid={"delta": [0.5, 1, 2]}, seeds=3, steps=20000)
    run.follow()
    df = run.dataframe()
"""

import array
import asyncio
import csv
import io
import json
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import msgpack
import numpy as np

__all__ = ["Lab", "Run", "LabError"]
__version__ = "0.1.0"

TERMINAL = {"finished", "failed", "stopped", "interrupted"}
# msgpackr "moreTypes": a typed array is ext type 0x74; its first byte says which array.
TYPED_ARRAY_EXT = 0x74
TYPECODES = {0: "b", 1: "B", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d", 9: "q", 10: "Q"}


class LabError(Exception):
    """The lab refused a request (the message names the field) or could not be reached."""

    def __init__(self, message, status=None, errors=None):
        super().__init__(message)
        self.status = status
        self.errors = errors or []


def _ext_hook(code, data):
    if code == TYPED_ARRAY_EXT and data[0] in TYPECODES:
        values = array.array(TYPECODES[data[0]])
        values.frombytes(data[1:])
        if sys.byteorder == "big":
            values.byteswap()
        return np.asarray(values)
    return msgpack.ExtType(code, data)


def _decode(payload):
    return msgpack.unpackb(payload, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def _number(text):
    # The CSV writes NaN, Inf and -Inf, which float() reads as they are.
    return float(text) if text else float("nan")


class Lab:
    """A lab server. `token` defaults to $LAB_TOKEN."""

    def __init__(self, url="http://127.0.0.1:8420", token=None):
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("LAB_TOKEN")

    # ---- HTTP -------------------------------------------------------------------------

    def _request(self, method, path, body=None, content_type="application/json", raw=False):
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
            headers["content-type"] = content_type
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req) as res:
                payload = res.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                err = json.loads(text)
            except ValueError:
                err = {"error": text}
            raise LabError(err.get("error", f"HTTP {e.code}"), e.code, err.get("errors")) from None
        except OSError as e:
            reason = getattr(e, "reason", e)
            raise LabError(f"cannot reach the lab at {self.url}: {reason}") from None
        return payload if raw else json.loads(payload)

    def experiments(self):
        """The catalog: each experiment's parameters (defaults, ranges, docs) and metrics."""
        return self._request("GET", "/api/experiments")

    def start(self, experiment, params=None, grid=None, seeds=None, zip=None, replicas=None,
              steps=None, every=None, backend=None, name=None, tags=None, note=None):
        """Starts a run; `grid` ({param: [values] or "1e-3..1e-1:5:log"}) and `seeds` make it a
        sweep (docs/sweeps.md). Returns the Run."""
        spec = {"experiment": experiment, "params": params or {}}
        for key, value in (("grid", grid), ("seeds", seeds), ("zip", zip),
                           ("replicas", replicas), ("steps", steps), ("every", every),
                           ("backend", backend), ("name", name), ("tags", tags), ("note", note)):
            if value is not None:
                spec[key] = value
        created = self._request("POST", "/api/runs", spec)
        return Run(self, created["id"])

    def runs(self, q=None, experiment=None, status=None):
        """Run summaries, oldest first; q matches words in the id, name, tags and note."""
        query = {k: v for k, v in (("q", q), ("experiment", experiment), ("status", status)) if v}
        path = "/api/runs" + ("?" + urllib.parse.urlencode(query) if query else "")
        return self._request("GET", path)

    def run(self, run_id):
        """An existing run by id."""
        run = Run(self, run_id)
        run.summary()  # raises LabError (404) for an unknown id
        return run

    def import_log(self, path):
        """Adds a run log written by `lab run --out=DIR` to this lab; returns the Run."""
        with open(path, "rb") as f:
            data = f.read()
        created = self._request("POST", "/api/runs/import", data, "application/octet-stream")
        return Run(self, created["id"])

    def stream_url(self):
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urllib.parse.urlencode({"token": self.token}) if self.token else ""
        return urllib.parse.urlunsplit((scheme, parts.netloc, "/api/stream", query, ""))


class Run:
    """One run of a lab."""

    def __init__(self, lab, run_id):
        self.lab = lab
        self.id = run_id

    def __repr__(self):
        return f"Run({self.id!r})"

    def summary(self):
        """The run's summary and detail: status, step, spec, name, tags, note, sweep."""
        return self.lab._request("GET", f"/api/runs/{urllib.parse.quote(self.id)}")

    @property
    def settings(self):
        """One dict per replica (swept values and seed), or None when the run is no sweep."""
        sweep = self.summary().get("sweep")
        return sweep["settings"] if sweep else None

    def annotate(self, name=None, tags=None, note=None):
        """Renames, retags or annotates the run (also after it ended)."""
        body = {k: v for k, v in (("name", name), ("tags", tags), ("note", note)) if v is not None}
        return self.lab._request("PATCH", f"/api/runs/{urllib.parse.quote(self.id)}", body)

    def stop(self):
        return self.lab._request("POST", f"/api/runs/{urllib.parse.quote(self.id)}/stop")

    def follow(self, progress=True, timeout=None):
        """Follows the run on the stream until it ends; returns its final status. Shows a
        progress bar (tqdm when installed, else a line on stderr) unless progress=False. Runs
        its own event loop in a thread, so it also works inside Jupyter."""
        result = {}

        def target():
            try:
                result["status"] = asyncio.run(self._follow(progress, timeout))
            except BaseException as e:  # re-raised in the caller's thread
                result["error"] = e

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        return result["status"]

    async def _follow(self, progress, timeout):
        import websockets  # only the stream needs it

        bar = None
        try:
            async with websockets.connect(self.lab.stream_url(), max_size=None) as ws:
                await ws.send(json.dumps({"type": "subscribe", "runs": [self.id],
                                          "since": {self.id: -1}, "frames": False}))
                async def messages():
                    async for payload in ws:
                        yield _decode(payload)
                agen = messages()
                while True:
                    try:
                        msg = await asyncio.wait_for(agen.__anext__(), timeout)
                    except StopAsyncIteration:
                        raise LabError("the lab closed the stream before the run ended") from None
                    kind = msg.get("type")
                    if kind == "error":
                        raise LabError(f"{msg['code']}: {msg['message']}")
                    if kind == "hello":
                        if progress:
                            bar = _Progress(msg["header"]["spec"]["steps"], self.id)
                            bar.update(msg["step"])
                        if msg["status"] in TERMINAL:
                            return msg["status"]
                    elif kind == "snapshot" and bar:
                        bar.update(msg["step"])
                    elif kind == "status" and msg["status"] in TERMINAL:
                        if bar:
                            bar.update(msg["step"])
                        return msg["status"]
        except OSError as e:
            raise LabError(f"cannot reach the lab at {self.lab.url}: {e}") from None
        finally:
            if bar:
                bar.close()

    def csv(self):
        """The metrics as the lab exports them (docs/protocol.md): one row per snapshot ×
        replica, setting columns for a sweep."""
        path = f"/api/runs/{urllib.parse.quote(self.id)}/metrics.csv"
        return self.lab._request("GET", path, raw=True).decode()

    def metrics(self):
        """(steps, {metric: array [snapshots × replicas]}) as float64 numpy arrays."""
        rows = list(csv.reader(io.StringIO(self.csv())))
        header, body = rows[0], rows[1:]
        metric_names = self.summary()["metrics"]
        col = {name: i for i, name in enumerate(header)}
        step_col, replica_col = col["step"], col["replica"]
        steps = sorted({int(r[step_col]) for r in body})
        replicas = 1 + max((int(r[replica_col]) for r in body), default=-1)
        at = {s: i for i, s in enumerate(steps)}
        out = {m: np.full((len(steps), replicas), np.nan) for m in metric_names}
        for r in body:
            i, k = at[int(r[step_col])], int(r[replica_col])
            for m in metric_names:
                out[m][i, k] = _number(r[col[m]])
        return np.asarray(steps, dtype=np.int64), out

    def dataframe(self):
        """A tidy pandas DataFrame: step, wall_ms, replica, the setting columns, metrics."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("dataframe() needs pandas: apt-get install python3-pandas "
                              "(or pip install pandas)") from None
        return pd.read_csv(io.StringIO(self.csv()))


class _Progress:
    """tqdm when it is installed, else one rewritten line on stderr."""

    def __init__(self, total, label):
        self.total, self.label, self.done = total, label, 0
        try:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=label, unit="step")
        except ImportError:
            self.bar = None

    def update(self, step):
        step = min(step, self.total)
        if self.bar is not None:
            self.bar.update(step - self.done)
        else:
            pct = 100 * step / self.total if self.total else 100
            print(f"\r{self.label}: step {step}/{self.total} ({pct:.1f}%)", end="",
                  file=sys.stderr, flush=True)
        self.done = step

    def close(self):
        if self.bar is not None:
            self.bar.close()
        else:
            print(file=sys.stderr)
