#!/usr/bin/env python3
"""Chaos soak: qwen-proxy in front of qwen-mock under mixed traffic and scripted faults.

Starts qwen-mock and qwen-proxy from BUILD_DIR on 127.0.0.1 (ephemeral ports), then for
--seconds runs several concurrent clients through the proxy: model lists (/api and /v1,
a small pool of tokens, so most are cache hits), non-stream and stream completions.
About --fault-rate of the requests are scripted with a fault through the mock's control
API (5xx, HTML pages, drops, stalls before and after the first event, truncated streams,
in-band failures, retries exhausted) on a fresh token, so the step is consumed by exactly
that request. About a tenth of the clients misbehave: slow readers (tiny receive buffer,
large streams) and callers who leave mid-stream.

Oracle (each breach is a violation, printed with the request that showed it):
  * a 200 stream carries exactly the scripted text then one `[DONE]`, or a prefix of it
    then exactly one error event and nothing else (never corrupted or duplicated text,
    never `[DONE]` after a truncation, nothing after the end);
  * a non-stream answer is the scripted completion, or a JSON error
    {"error":{"message","type",...}} with a sensible status;
  * each fault gets the outcome it must get (a single pre-commit failure is retried into a
    success; retries exhausted give 502; a truncation or stall after the first event gives
    the error event; a relayed 400 stays 400);
  * a caller who left mid-stream made the proxy close the upstream (the mock's journal
    shows the stream `client_gone`, SSE-9);
  * the proxy stays up (/healthz every second, process alive) and exits 0 on SIGTERM;
  * its VmRSS and open fd count are flat: after a warm-up window, the maximum of the last
    window is within the margins of the maximum of the first window; 3 s after the load
    the fd count is at most the count before it plus one pooled upstream connection per
    client.

The expected texts are taken from the mock directly (not through the proxy) before the
load starts. Python 3 standard library only. Exit status: 0 clean, 1 on any violation,
2 on a setup problem.

  bench/chaos_soak.py BUILD_DIR [--seconds 300] [--clients 20] [--fault-rate 0.1] [--seed N]
"""

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MODELS = ["qwen-max-latest", "qwen-plus-latest", "qwen-turbo-latest"]
PROMPTS = ["hi", "Tell me a story.", "你好，世界", "count to ten", "emoji please 🎉"]
JSON_ERROR_STATUSES = {400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504}
CLIENT_TIMEOUT_S = 30.0

# Proxy settings: short timers, so that stalls and expiries happen many times in a run, and
# a small cache, so that eviction runs and the cache is full long before the first window.
# The soak's references and faults are v1's (the mock's v1 routes, v1 stream knobs), so the
# proxy speaks v1 to it whatever its default.
PROXY_ARGS = [
    "--upstream-dialect", "v1",
    "--cache-ttl", "2", "--stale-grace", "5", "--cache-max-entries", "64",
    "--upstream-timeout", "2", "--stream-idle-timeout", "2", "--retry-base-ms", "20",
    "--retry-after-cap", "2", "--deadline-ms", "20000", "--threads", "4",
]


class SetupError(Exception):
    pass


# ---- a small HTTP/1.1 client over raw sockets (slow readers need the socket) -----------


class Reply:
    def __init__(self):
        self.status = 0
        self.headers = {}
        self.body = b""
        self.complete = False  # the framing ended properly (Content-Length or last chunk)
        self.left = False  # the client hung up on purpose


class Conn:
    """One request on its own connection; reads headers then the body incrementally."""

    def __init__(self, port, rcvbuf=None, timeout=CLIENT_TIMEOUT_S):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.read_size = 65536
        self.read_delay = 0.0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, method, path, headers, body=None):
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1", "Connection: close"]
        for k, v in headers.items():
            lines.append("%s: %s" % (k, v))
        data = body.encode() if isinstance(body, str) else (body or b"")
        if body is not None:
            lines.append("Content-Type: application/json")
            lines.append("Content-Length: %d" % len(data))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)

    def _fill(self):
        if self.read_delay:
            time.sleep(self.read_delay)
        chunk = self.sock.recv(self.read_size)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_head(self, reply):
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("closed before the response headers")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            raise ConnectionError("bad status line %r" % lines[0])
        reply.status = int(m.group(1))
        for line in lines[1:]:
            k, _, v = line.partition(":")
            reply.headers[k.strip().lower()] = v.strip()

    def body_pieces(self, reply):
        """Yields body bytes as they arrive; sets reply.complete at a proper end."""
        te = reply.headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill():
                        return
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                self.buf = rest
                if size == 0:
                    reply.complete = True
                    return
                while len(self.buf) < size + 2:
                    if not self._fill():
                        if self.buf:
                            yield self.buf[:size]
                            self.buf = b""
                        return
                piece, self.buf = self.buf[:size], self.buf[size + 2:]
                yield piece
        elif "content-length" in reply.headers:
            want = int(reply.headers["content-length"])
            got = 0
            while got < want:
                if not self.buf and not self._fill():
                    return
                piece, self.buf = self.buf[: want - got], self.buf[want - got:]
                got += len(piece)
                yield piece
            reply.complete = True
        else:
            while True:
                if self.buf:
                    piece, self.buf = self.buf, b""
                    yield piece
                if not self._fill():
                    reply.complete = True  # close-delimited
                    return


def http_simple(port, method, path, headers=None, body=None, timeout=CLIENT_TIMEOUT_S):
    c = Conn(port, timeout=timeout)
    try:
        c.send(method, path, headers or {}, body)
        r = Reply()
        c.read_head(r)
        r.body = b"".join(c.body_pieces(r))
        return r
    finally:
        c.close()


# ---- SSE --------------------------------------------------------------------------------


def sse_events(data):
    """Splits SSE bytes into (events, rest): each event the joined `data:` lines."""
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    events = []
    while b"\n\n" in text:
        block, text = text.split(b"\n\n", 1)
        lines = [ln for ln in block.split(b"\n") if ln.startswith(b"data:")]
        if lines:
            events.append(b"\n".join(ln[5:].lstrip(b" ") for ln in lines))
    return events, text


# ---- processes --------------------------------------------------------------------------


def start(argv, log_path, what):
    log = open(log_path, "wb")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.time() + 15
    line = b""
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith(b"listening on http://"):
            break
        if p.poll() is not None or not line:
            break
    m = re.match(rb"listening on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        p.kill()
        raise SetupError("%s did not start: %r (see %s)" % (what, line, log_path))
    threading.Thread(target=p.stdout.read, daemon=True).start()  # drain
    return p, int(m.group(1))


def stop(p, what, violations):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            violations.add("process", "%s did not stop within 10 s of SIGTERM" % what)
            return
    else:
        rc = p.returncode
    if rc != 0:
        violations.add("process", "%s exited with status %s" % (what, rc))


def proc_sample(pid):
    rss_kib = None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss_kib, fds


# ---- the run ----------------------------------------------------------------------------


class Violations:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_kind = collections.Counter()
        self.examples = collections.defaultdict(list)

    def add(self, kind, detail):
        with self.lock:
            self.by_kind[kind] += 1
            if len(self.examples[kind]) < 5:
                self.examples[kind].append(detail)

    def total(self):
        with self.lock:
            return sum(self.by_kind.values())


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes = collections.Counter()
        self.latency = collections.defaultdict(list)

    def record(self, kind, outcome, seconds):
        with self.lock:
            self.outcomes[(kind, outcome)] += 1
            self.latency[kind].append(seconds)


# Faults: (name, steps, expect). expect: "ok" must succeed exactly; "error_event" a 200
# stream ending in the error event after a strict prefix; an int: that JSON error status.
MODEL_FAULTS = [
    ("500", [{"status": 500}], "ok"),
    ("html-waf", [{"html": "waf"}], "ok"),
    ("html-captcha", [{"html": "captcha"}], "ok"),
    ("drop", [{"drop": True}], "ok"),
    ("stall-before-headers", [{"delay_ms": 2600}], "ok"),
    ("retries-exhausted", [{"status": 503}] * 4, 502),
]
CHAT_FAULTS = [
    ("502", [{"status": 502}], "ok"),
    ("html-gateway", [{"html": "gateway"}], "ok"),
    ("drop", [{"drop": True}], "ok"),
    ("429-retry-after", [{"status": 429, "retry_after": 1}], "ok"),
    ("stall-before-headers", [{"delay_ms": 2600}], "ok"),
    ("retries-exhausted", [{"status": 500}] * 4, 502),
    ("400-relayed", [{"status": 400, "body": "{\"detail\":\"Bad thing\"}"}], 400),
]
STREAM_FAULTS = [
    ("503", [{"status": 503}], "ok"),
    ("html-captcha", [{"html": "captcha"}], "ok"),
    ("drop", [{"drop": True}], "ok"),
    ("inband-quota", [{"inband_error": "quota"}], "ok"),
    ("stall-before-first-event", [{"delay_ms": 2600}], "ok"),
    ("retries-exhausted", [{"status": 502}] * 4, 502),
    ("truncate-mid-stream", "truncate", "error_event"),
    ("stall-mid-stream", "stall", "error_event"),
]
STREAM_CHUNKS = 8  # pieces of a scripted stream (truncations cut strictly inside them)


class Soak:
    def __init__(self, args, mock_port, proxy_port, refs, violations, stats):
        self.args = args
        self.mock_port = mock_port
        self.proxy_port = proxy_port
        self.refs = refs
        self.violations = violations
        self.stats = stats
        self.stop_at = time.time() + args.seconds
        self.token_seq = 0
        self.token_lock = threading.Lock()
        self.model_tokens = ["soak-models-%d" % i for i in range(6)]
        self.leavers = collections.deque()  # (time left, token), checked in the journal (SSE-9)
        self.leavers_checked = 0

    def check_leavers(self, older_than_s, limit):
        """A caller who left mid-stream must have made the proxy close the upstream: the
        mock journals its 1 s stream as `client_gone` (SSE-9). Checked a few seconds after
        the caller left, while the mock's bounded journal still holds the entry."""
        now = time.time()
        for _ in range(limit):
            with self.token_lock:
                if not self.leavers or self.leavers[0][0] > now - older_than_s:
                    return
                _, token = self.leavers.popleft()
            for _ in range(50):
                j = json.loads(http_simple(self.mock_port, "GET", "/__mock/journal?token=" + token, timeout=5).body)
                if j.get("in_flight") == 0:
                    break
                time.sleep(0.1)
            entries = j.get("entries", [])
            self.leavers_checked += 1
            if len(entries) != 1 or not entries[0].get("client_gone"):
                self.violations.add("upstream-kept-after-caller-left",
                                    "token %s: journal (status, events_sent, client_gone) %s" %
                                    (token, [(e.get("status"), e.get("events_sent"), e.get("client_gone")) for e in entries]))

    def fresh_token(self, what):
        with self.token_lock:
            self.token_seq += 1
            return "soak-%s-%d-%d" % (what, os.getpid(), self.token_seq)

    def script(self, token, route, steps):
        body = json.dumps({"token": token, "route": route, "steps": steps})
        r = http_simple(self.mock_port, "POST", "/__mock/scenarios", {}, body, timeout=5)
        if r.status != 200:
            raise SetupError("mock refused steps %s: %s %r" % (body, r.status, r.body[:200]))

    # -- checks --

    def check_json_error(self, r, where):
        try:
            obj = json.loads(r.body)
            err = obj["error"]
            ok = isinstance(err.get("message"), str) and isinstance(err.get("type"), str)
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            self.violations.add("error-not-json", "%s: status %d body %r" % (where, r.status, r.body[:200]))
            return False
        if r.status not in JSON_ERROR_STATUSES:
            self.violations.add("error-status", "%s: status %d %r" % (where, r.status, r.body[:200]))
            return False
        return True

    def expect_status(self, expect, r, where):
        if isinstance(expect, int) and r.status != expect:
            self.violations.add("fault-outcome", "%s: expected %d, got %d %r" % (where, expect, r.status, r.body[:160]))
            return False
        if expect == "ok" and r.status != 200:
            self.violations.add("fault-outcome", "%s: expected success after a retry, got %d %r" % (where, r.status, r.body[:160]))
            return False
        if expect == "error_event" and r.status != 200:
            self.violations.add("fault-outcome", "%s: expected a 200 stream ending in an error event, got %d %r" % (where, r.status, r.body[:160]))
            return False
        return True

    # -- requests --

    def do_models(self, rnd, fault):
        v1 = rnd.random() < 0.5
        path = "/v1/models" if v1 else "/api/models"
        if fault:
            name, steps, expect = fault
            token = self.fresh_token("mfault")
            self.script(token, "models", steps)
        else:
            name, expect = "none", "ok"
            token = rnd.choice(self.model_tokens)
        where = "GET %s fault=%s token=%s" % (path, name, token)
        r = http_simple(self.proxy_port, "GET", path, {"Authorization": "Bearer " + token})
        if not self.expect_status(expect, r, where):
            return "violation"
        if r.status != 200:
            return "error-%d" % r.status if self.check_json_error(r, where) else "violation"
        try:
            obj = json.loads(r.body)
            ids = [m["id"] for m in obj["data"]]
            if v1 and (obj.get("object") != "list" or any(m.get("object") != "model" for m in obj["data"])):
                raise ValueError("not the OpenAI list shape")
        except (ValueError, KeyError, TypeError) as e:
            self.violations.add("models-body", "%s: %s %r" % (where, e, r.body[:200]))
            return "violation"
        if ids != self.refs["model_ids"]:
            self.violations.add("models-body", "%s: ids %s, expected %s" % (where, ids, self.refs["model_ids"]))
            return "violation"
        return "ok-" + r.headers.get("x-cache", "?").lower()

    def chat_body(self, rnd, stream, incremental):
        model, prompt = rnd.choice(MODELS), rnd.choice(PROMPTS)
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body["stream"] = True
            if incremental is not None:
                body["incremental_output"] = incremental
        return body, (model, prompt)

    def do_chat(self, rnd, fault):
        body, ref_key = self.chat_body(rnd, False, None)
        name, expect = ("none", "ok") if not fault else (fault[0], fault[2])
        token = self.fresh_token("chat")
        if fault:
            self.script(token, "chat", fault[1])
        path = rnd.choice(["/api/chat/completions", "/v1/chat/completions"])
        where = "POST %s fault=%s token=%s" % (path, name, token)
        r = http_simple(self.proxy_port, "POST", path, {"Authorization": "Bearer " + token}, json.dumps(body))
        if not self.expect_status(expect, r, where):
            return "violation"
        if r.status != 200:
            return "error-%d" % r.status if self.check_json_error(r, where) else "violation"
        try:
            content = json.loads(r.body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, TypeError, IndexError) as e:
            self.violations.add("completion-body", "%s: %s %r" % (where, e, r.body[:200]))
            return "violation"
        want = self.refs["text"][ref_key]
        if content != want:
            self.violations.add("completion-text", "%s: %r, expected %r" % (where, content[:120], want[:120]))
            return "violation"
        return "ok"

    def do_stream(self, rnd, fault, mode="normal"):
        """mode: normal, slow (slow reader of a large stream), leave (hangs up mid-stream)."""
        incremental = rnd.choice([None, True, False])
        if mode == "slow":
            incremental = True  # piece_bytes is meant for incremental deltas
        body, ref_key = self.chat_body(rnd, True, incremental)
        token = self.fresh_token("stream")
        name, expect = "none", "ok"
        want = self.refs["text"][ref_key]
        steps = None
        if fault:
            name, steps, expect = fault
            if steps in ("truncate", "stall"):
                # Cut after K events, 1..all pieces (K = all: the whole text but no [DONE],
                # still a drop), in any framing the mock can send.
                shape = {"chunks": STREAM_CHUNKS}
                shape.update(rnd.choice([{}, {}, {"coalesce": 2}, {"coalesce": True},
                                         {"split_utf8": True}, {"crlf": True}]))
                cut = rnd.randint(1, STREAM_CHUNKS)
                if steps == "truncate":
                    shape["truncate_after"] = cut
                else:
                    shape.update({"stall_after": cut, "stall_ms": 8000})
                steps = [{"stream": shape}]
                name += "/" + ",".join(k for k in sorted(shape) if k not in ("chunks", "stall_ms")) + "=%d" % cut
        elif mode == "slow":
            steps = [{"stream": {"chunks": 16, "piece_bytes": 8192}}]
            want = self.refs["big"][ref_key]
            name = "slow-reader"
            if rnd.random() < 0.3:
                # A truncation while the proxy holds the upstream paused for this reader.
                steps[0]["stream"]["truncate_after"] = rnd.randint(2, 15)
                name, expect = "slow-reader-truncated", "error_event"
        elif mode == "leave":
            steps = [{"stream": {"chunks": 20, "chunk_delay_ms": 50}}]
            name = "caller-leaves"
        elif rnd.random() < 0.2:
            steps = [{"stream": {"chunks": 6, "split_utf8": True}}]
            name = "split-utf8"
        if steps:
            self.script(token, "chat", steps)
        path = rnd.choice(["/api/chat/completions", "/v1/chat/completions"])
        where = "POST %s stream fault=%s token=%s incremental=%s" % (path, name, token, incremental)
        c = Conn(self.proxy_port, rcvbuf=4096 if mode == "slow" else None)
        r = Reply()
        try:
            c.send("POST", path, {"Authorization": "Bearer " + token}, json.dumps(body))
            c.read_head(r)
            if r.status != 200 or "text/event-stream" not in r.headers.get("content-type", ""):
                r.body = b"".join(c.body_pieces(r))
                if not self.expect_status(expect, r, where):
                    return "violation"
                if r.status == 200:
                    self.violations.add("stream-shape", "%s: 200 without text/event-stream: %r" % (where, r.body[:200]))
                    return "violation"
                return "error-%d" % r.status if self.check_json_error(r, where) else "violation"
            if mode == "slow":
                c.read_size, c.read_delay = 1024, 0.002
            events, rest, raw = [], b"", []
            leave_after = rnd.randint(2, 5) if mode == "leave" else None
            for piece in c.body_pieces(r):
                raw.append(piece)
                evs, rest = sse_events(rest + piece)
                events.extend(evs)
                if leave_after is not None and len(events) >= leave_after:
                    r.left = True
                    break
        finally:
            c.close()
        if r.left:
            with self.token_lock:
                self.leavers.append((time.time(), token))
        return self.judge_stream(events, r, want, expect, where, b"".join(raw))

    def judge_stream(self, events, r, want, expect, where, raw):
        text, done, errors, after_end = "", 0, 0, 0
        finish = None
        for ev in events:
            if done or errors:
                after_end += 1
            if ev == b"[DONE]":
                done += 1
                continue
            try:
                obj = json.loads(ev)
            except ValueError:
                self.violations.add("stream-event", "%s: event is not JSON: %r" % (where, ev[:200]))
                return "violation"
            if "error" in obj:
                errors += 1
                e = obj["error"]
                if not (isinstance(e, dict) and isinstance(e.get("message"), str)):
                    self.violations.add("stream-event", "%s: malformed error event %r" % (where, ev[:200]))
                    return "violation"
                continue
            for ch in obj.get("choices", []):
                text += (ch.get("delta") or {}).get("content") or ""
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
        short = "%d of %d chars" % (len(text), len(want))
        if not want.startswith(text):
            kind = "stream-duplicated" if len(text) > len(want) else "stream-corrupted"
            self.violations.add(kind, "%s: text %r is not a prefix of %r (%s)" % (where, text[:160], want[:160], short))
            return "violation"
        if after_end:
            self.violations.add("stream-after-end", "%s: %d event(s) after the end (DONE %d, errors %d)" % (where, after_end, done, errors))
            return "violation"
        if r.left:
            return "left"
        if done and errors:
            self.violations.add("stream-done-and-error", "%s: both [DONE] and an error event" % where)
            return "violation"
        if done > 1 or errors > 1:
            self.violations.add("stream-repeated-end", "%s: %d [DONE], %d error events" % (where, done, errors))
            return "violation"
        if not r.complete:
            self.violations.add("stream-unterminated", "%s: connection closed inside the chunked body after %d events (%s)" % (where, len(events), short))
            return "violation"
        if done:
            if text != want:
                kind = "stream-done-after-truncation" if expect == "error_event" else "stream-done-short-text"
                self.violations.add(kind, "%s: [DONE] after %s (expect=%s)" % (where, short, expect))
                return "violation"
            if expect == "error_event":
                self.violations.add("stream-done-after-truncation", "%s: the upstream stream was cut, yet the full text and [DONE] came" % where)
                return "violation"
            if not finish:
                self.violations.add("stream-no-finish", "%s: [DONE] without a finish_reason" % where)
                return "violation"
            return "ok"
        if errors:
            if expect == "ok":
                self.violations.add("fault-outcome", "%s: error event after %s where a full answer was due" % (where, short))
                return "violation"
            return "error-event"
        self.violations.add("stream-no-end", "%s: ended with neither [DONE] nor an error event (%s) raw tail %r" % (where, short, raw[-200:]))
        return "violation"

    # -- clients --

    def client(self, idx, role):
        rnd = random.Random(self.args.seed * 1000 + idx)
        while time.time() < self.stop_at:
            if role in ("slow", "leave"):
                kind, fault = "stream-" + role, None
            else:
                x = rnd.random()
                kind = "models" if x < 0.3 else ("chat" if x < 0.6 else "stream")
                fault = None
                if rnd.random() < self.args.fault_rate:
                    fault = rnd.choice({"models": MODEL_FAULTS, "chat": CHAT_FAULTS, "stream": STREAM_FAULTS}[kind])
            label = kind + ("/" + fault[0] if fault else "")
            t0 = time.time()
            try:
                if kind == "models":
                    outcome = self.do_models(rnd, fault)
                elif kind == "chat":
                    outcome = self.do_chat(rnd, fault)
                else:
                    outcome = self.do_stream(rnd, fault, {"stream": "normal", "stream-slow": "slow", "stream-leave": "leave"}[kind])
            except SetupError as e:
                self.violations.add("setup", str(e))
                outcome = "violation"
            except (OSError, ConnectionError, ValueError) as e:
                self.violations.add("transport", "%s: %s: %s" % (label, type(e).__name__, e))
                outcome = "violation"
            self.stats.record(kind, outcome, time.time() - t0)
            if fault:
                self.stats.record("fault:" + label, outcome, time.time() - t0)
            elif role == "normal":
                self.stats.record("plain:" + kind, outcome, time.time() - t0)


def references(mock_port):
    """Expected texts, straight from the mock: non-stream content per (model, prompt), and
    the text of the large slow-reader stream, which piece_bytes makes longer."""
    refs = {"text": {}, "big": {}}
    r = http_simple(mock_port, "GET", "/api/models", {"Authorization": "Bearer soak-ref"})
    refs["model_ids"] = [m["id"] for m in json.loads(r.body)["data"]]
    for model in MODELS:
        for prompt in PROMPTS:
            body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}]})
            r = http_simple(mock_port, "POST", "/api/chat/completions", {"Authorization": "Bearer soak-ref"}, body)
            if r.status != 200:
                raise SetupError("mock reference %s/%s: %d %r" % (model, prompt, r.status, r.body[:200]))
            refs["text"][(model, prompt)] = json.loads(r.body)["choices"][0]["message"]["content"]
            for key, steps in (("big", [{"stream": {"chunks": 16, "piece_bytes": 8192}}]), ("check", None)):
                if steps:
                    req = json.dumps({"token": "soak-ref", "route": "chat", "steps": steps})
                    http_simple(mock_port, "POST", "/__mock/scenarios", {}, req)
                sbody = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                                    "stream": True, "incremental_output": True})
                r = http_simple(mock_port, "POST", "/api/chat/completions", {"Authorization": "Bearer soak-ref"}, sbody)
                events, _ = sse_events(r.body)
                text = ""
                for ev in events:
                    if ev == b"[DONE]":
                        break
                    for ch in json.loads(ev).get("choices", []):
                        text += (ch.get("delta") or {}).get("content") or ""
                if key == "big":
                    refs["big"][(model, prompt)] = text
                elif text != refs["text"][(model, prompt)]:
                    raise SetupError("mock stream text differs from its non-stream text for %s/%s" % (model, prompt))
    return refs


def percentile(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir", help="a build directory with mockupstream/qwen-mock and proxy/qwen-proxy")
    ap.add_argument("--seconds", type=float, default=300, help="length of the load (300; at least 20)")
    ap.add_argument("--clients", type=int, default=20, help="concurrent clients, a tenth of them misbehaving (20)")
    ap.add_argument("--fault-rate", type=float, default=0.10, help="share of requests scripted with a fault (0.1)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the clients' choices (1)")
    ap.add_argument("--rss-margin-pct", type=float, default=10.0,
                    help="allowed growth of the window's max VmRSS, in percent (10) ...")
    ap.add_argument("--rss-margin-mib", type=float, default=4.0, help="... plus this many MiB (4)")
    ap.add_argument("--fd-margin", type=int, default=8, help="allowed growth of the window's max fd count (8)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the logs directory even on success")
    ap.add_argument("--proxy-arg", action="append", default=[], metavar="ARG",
                    help="one more qwen-proxy argument, e.g. --proxy-arg=--mutant=bare_done_on_drop "
                         "(a QK_MUTANTS build) to see the oracle catch a known defect")
    args = ap.parse_args()
    if args.seconds < 20 or args.clients < 2:
        print("chaos_soak: need --seconds >= 20 and --clients >= 2", file=sys.stderr)
        return 2

    mock_bin = os.path.join(args.build_dir, "mockupstream", "qwen-mock")
    proxy_bin = os.path.join(args.build_dir, "proxy", "qwen-proxy")
    for b in (mock_bin, proxy_bin):
        if not os.access(b, os.X_OK):
            print("chaos_soak: no executable %s (build it first)" % b, file=sys.stderr)
            return 2

    logs = tempfile.mkdtemp(prefix="chaos_soak.")
    violations, stats = Violations(), Stats()
    mock = proxy = None
    samples = []  # (t, rss_kib, fds)
    health = {}
    try:
        mock, mock_port = start([mock_bin, "--port", "0", "--quiet", "--threads", "4"],
                                os.path.join(logs, "mock.log"), "qwen-mock")
        proxy, proxy_port = start([proxy_bin, "--port", "0", "--upstream", "http://127.0.0.1:%d" % mock_port,
                                   "--log-format", "text"] + PROXY_ARGS + args.proxy_arg,
                                  os.path.join(logs, "proxy.log"), "qwen-proxy")
        refs = references(mock_port)
        idle_start = proc_sample(proxy.pid)

        soak = Soak(args, mock_port, proxy_port, refs, violations, stats)
        n_bad = max(2, round(args.clients / 10))
        roles = ["slow" if i % 2 == 0 else "leave" for i in range(n_bad)] + ["normal"] * (args.clients - n_bad)
        threads = [threading.Thread(target=soak.client, args=(i, role), daemon=True) for i, role in enumerate(roles)]
        t_start = time.time()
        for t in threads:
            t.start()
        next_report = t_start + 30
        while any(t.is_alive() for t in threads):
            time.sleep(1.0)
            now = time.time()
            if proxy.poll() is not None:
                violations.add("process", "qwen-proxy died with status %s at t=%.0fs" % (proxy.returncode, now - t_start))
                break
            rss, fds = proc_sample(proxy.pid)
            samples.append((now - t_start, rss, fds))
            try:
                h = http_simple(proxy_port, "GET", "/healthz", timeout=5)
                if h.status != 200:
                    violations.add("healthz", "t=%.0fs: /healthz %d" % (now - t_start, h.status))
            except (OSError, ConnectionError) as e:
                violations.add("healthz", "t=%.0fs: /healthz %s" % (now - t_start, e))
            try:
                soak.check_leavers(3.0, 20)
            except (OSError, ConnectionError, ValueError) as e:
                violations.add("mock-control", "journal read failed: %s" % e)
            if now >= next_report:
                print("t=%4.0fs requests=%d violations=%d rss=%d KiB fds=%d" %
                      (now - t_start, sum(stats.outcomes[k] for k in stats.outcomes if ":" not in k[0]),
                       violations.total(), rss, fds), flush=True)
                next_report += 30
            if now > t_start + args.seconds + 3 * CLIENT_TIMEOUT_S:
                violations.add("hang", "clients still running %.0fs after the end" % (now - t_start - args.seconds))
                break
        elapsed = time.time() - t_start
        time.sleep(3)  # let the proxy settle: idle figures
        try:
            health = json.loads(http_simple(proxy_port, "GET", "/healthz", timeout=5).body)
        except (OSError, ConnectionError, ValueError):
            health = {}
        soak.check_leavers(0, 1 << 30)
        idle_end = proc_sample(proxy.pid) if proxy.poll() is None else (None, None)
    except SetupError as e:
        print("chaos_soak: %s" % e, file=sys.stderr)
        for p in (proxy, mock):
            if p and p.poll() is None:
                p.kill()
        print("chaos_soak: logs in %s" % logs, file=sys.stderr)
        return 2
    finally:
        if proxy:
            stop(proxy, "qwen-proxy", violations)
        if mock:
            stop(mock, "qwen-mock", violations)

    # ---- flatness ----
    window = min(60.0, args.seconds / 4)
    first = [s for s in samples if window <= s[0] < 2 * window]
    last = [s for s in samples if s[0] >= args.seconds - window]
    flat = {}
    if first and last:
        f_rss, l_rss = max(s[1] for s in first), max(s[1] for s in last)
        f_fd, l_fd = max(s[2] for s in first), max(s[2] for s in last)
        rss_limit = f_rss * (1 + args.rss_margin_pct / 100.0) + args.rss_margin_mib * 1024
        flat = {"f_rss": f_rss, "l_rss": l_rss, "f_fd": f_fd, "l_fd": l_fd, "rss_limit": rss_limit}
        if l_rss > rss_limit:
            violations.add("rss-growth", "VmRSS max %d KiB in the last %.0fs > %d KiB allowed (first window max %d KiB +%.0f%% +%.0f MiB)"
                           % (l_rss, window, rss_limit, f_rss, args.rss_margin_pct, args.rss_margin_mib))
        if l_fd > f_fd + args.fd_margin:
            violations.add("fd-growth", "fd count max %d in the last %.0fs > first window max %d + %d"
                           % (l_fd, window, f_fd, args.fd_margin))
    else:
        violations.add("samples", "not enough RSS/fd samples (%d)" % len(samples))
    # Idle, the proxy may keep one pooled upstream connection per concurrent client.
    if idle_end[1] is not None and idle_end[1] > idle_start[1] + args.clients:
        violations.add("fd-growth", "idle fd count %d after the run > %d before + %d clients"
                       % (idle_end[1], idle_start[1], args.clients))

    # ---- report ----
    print("\n== chaos soak: %.0f s, %d clients (%d misbehaving), fault rate %.0f%%, seed %d ==" %
          (elapsed, args.clients, n_bad, args.fault_rate * 100, args.seed))
    kinds = sorted({k for k, _ in stats.outcomes if ":" not in k})
    total = 0
    print("%-14s %7s  %-60s %8s %8s" % ("kind", "count", "outcomes", "p50 ms", "p99 ms"))
    for k in kinds:
        outs = {o: n for (kk, o), n in stats.outcomes.items() if kk == k}
        n = sum(outs.values())
        total += n
        lat = stats.latency[k]
        print("%-14s %7d  %-60s %8.1f %8.1f" % (k, n, " ".join("%s=%d" % kv for kv in sorted(outs.items())),
                                                 percentile(lat, 50) * 1000, percentile(lat, 99) * 1000))
    alllat = [x for k in kinds for x in stats.latency[k]]
    print("%-14s %7d  %-60s %8.1f %8.1f" % ("all", total, "", percentile(alllat, 50) * 1000, percentile(alllat, 99) * 1000))
    print("without a fault, well-behaved clients only (split-UTF-8 streams included):")
    for k in sorted(k for k in stats.latency if k.startswith("plain:")):
        lat = stats.latency[k]
        print("%-14s %7d  %-60s %8.1f %8.1f" % (k[6:], len(lat), "", percentile(lat, 50) * 1000, percentile(lat, 99) * 1000))
    faults = sorted(k for k in stats.latency if k.startswith("fault:"))
    print("\nscripted faults (%d requests):" % sum(len(stats.latency[k]) for k in faults))
    for k in faults:
        outs = {o: n for (kk, o), n in stats.outcomes.items() if kk == k}
        print("  %-40s %s" % (k[6:], " ".join("%s=%d" % kv for kv in sorted(outs.items()))))
    if flat:
        print("\nproxy VmRSS: idle start %d KiB, first window max %d KiB, last window max %d KiB (limit %d), idle end %s KiB"
              % (idle_start[0], flat["f_rss"], flat["l_rss"], flat["rss_limit"], idle_end[0]))
        print("proxy fds:   idle start %d, first window max %d, last window max %d (limit %d), idle end %s (limit %d)"
              % (idle_start[1], flat["f_fd"], flat["l_fd"], flat["f_fd"] + args.fd_margin, idle_end[1],
                 idle_start[1] + args.clients))
        print("(windows of %.0f s: [%.0f, %.0f) after the warm-up, and the last one)" % (window, window, 2 * window))
    print("callers who left mid-stream, upstream closed (journal client_gone) checked: %d" % soak.leavers_checked)
    print("proxy /healthz stream_pauses (upstream paused for a slow reader, SSE-11): %s" % health.get("stream_pauses", "?"))
    n_viol = violations.total()
    if n_viol:
        print("\nVIOLATIONS: %d" % n_viol)
        for kind, n in sorted(violations.by_kind.items()):
            print("  %s: %d" % (kind, n))
            for ex in violations.examples[kind]:
                print("      " + ex)
        print("logs: %s" % logs)
        return 1
    print("\nno violations")
    if args.keep_logs:
        print("logs: %s" % logs)
    else:
        for f in os.listdir(logs):
            os.unlink(os.path.join(logs, f))
        os.rmdir(logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
