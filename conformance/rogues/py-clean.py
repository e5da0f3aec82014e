#!/usr/bin/env python3
"""py-clean.py: a minimal, CORRECT Qwen web-chat proxy on the Python 3 standard library
(http.server's ThreadingHTTPServer, http.client for the upstream).

DEFECTS: none on purpose. It is the Python control of the gallery: the other py-* rogues
are this proxy with their named defects put in (before SPEC 1.3.0, so they lack what follows).
What the standard library does not do by itself, it does by hand (SPEC 1.3.0): a second
Authorization, Host or Content-Length line is refused (headers.get returns the first), so
is a control byte in a header (checked on the raw lines: the email parser behind
http.client.parse_headers splits a line at a bare CR), HEAD is served on the GET routes, a
stream that ends inside an event is a failure, and only complete events and comments reset
the stream's idle clock (the socket timeout restarts with every byte).

Usage: python3 py-clean.py --port 0 --upstream http://127.0.0.1:9100
"""
import argparse, codecs, http.client, json, queue, random, re, select, socket, sys, threading, time, uuid
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_RETRIES, RETRY_BASE_MS, RETRY_AFTER_CAP_MS = 3, 20, 2000
ATTEMPT_TIMEOUT_MS, DEADLINE_MS = 1000, 2500
CACHE_TTL_MS, CACHE_MAX, STALE_GRACE_MS = 2000, 8, 2000
MAX_BODY, IDLE_MS, KEEPALIVE_MS = 65536, 1200, 250
CORS_ORIGINS = ("https://conformance.example", "http://localhost:3000")
ROUTES = {"/api/models": "GET", "/v1/models": "GET", "/api/chat/completions": "POST", "/v1/chat/completions": "POST"}
UP = None  # (host, port) of the upstream
stats = {"stream_pauses": 0}
now_ms = lambda: time.monotonic() * 1000

class Retry(Exception):  # a failed attempt worth another one
    def __init__(self, reason, status=None, timeout=False, wait_ms=0):
        self.reason, self.status, self.timeout, self.wait_ms = reason, status, timeout, wait_ms

class Relay(Exception):  # an upstream answer the caller gets as it is (4xx, a long Retry-After)
    def __init__(self, status, message, retry_after=None):
        self.status, self.message, self.retry_after = status, message, retry_after

def retry_after_ms(value):  # delta-seconds (the form the upstream sends)
    return int(value) * 1000 if value and value.strip().isdigit() else None

def classify(resp):
    """Raises Retry or Relay for an upstream answer that is not a success."""
    ct = resp.getheader("Content-Type", "")
    text = resp.read().decode("utf-8", "replace")
    what = "upstream HTTP %d%s" % (resp.status, " (HTML page)" if "text/html" in ct else "")
    if "text/html" in ct or resp.status in (500, 502, 504): raise Retry(what, resp.status)
    detail = None
    try:
        j = json.loads(text)
        detail = j.get("detail") if isinstance(j.get("detail"), str) else (j.get("error") or {}).get("message")
    except (ValueError, AttributeError): pass
    ra = resp.getheader("Retry-After")
    if resp.status in (429, 503):
        ms = retry_after_ms(ra)
        if ms is not None and ms <= RETRY_AFTER_CAP_MS: raise Retry(what, resp.status, wait_ms=ms)
        if ms is None and resp.status == 503: raise Retry(what, resp.status)
    raise Relay(resp.status, detail or what, ra)

def with_retries(attempt, stop=lambda: False):
    """Calls attempt(budget_s) until it returns or raises Relay, or retries run out.
    Returns ('ok', value), ('relay', Relay), ('gone', None) or ('deadline'|'exhausted', last Retry)."""
    deadline, last = now_ms() + DEADLINE_MS, None
    for n in range(1, MAX_RETRIES + 2):
        if stop(): return "gone", None
        budget = min(ATTEMPT_TIMEOUT_MS, deadline - now_ms())
        if budget <= 0: return "deadline", last
        try:
            return "ok", attempt(budget / 1000.0)
        except Relay as r: return "relay", r
        except Retry as e: last = e
        except socket.timeout:
            last = Retry("upstream timed out after %d ms" % budget, timeout=True)
            if budget < ATTEMPT_TIMEOUT_MS: return "deadline", last
        except (OSError, http.client.HTTPException) as e:
            last = Retry("upstream connection failed (%s)" % type(e).__name__)
        if n > MAX_RETRIES: break
        d = RETRY_BASE_MS * 2 ** (n - 1)
        wait = max(d / 2 + random.random() * d / 2, last.wait_ms)
        if now_ms() + wait >= deadline: return "deadline", last
        time.sleep(wait / 1000.0)
    return "exhausted", last

def open_upstream(method, path, headers, body, budget):
    conn = http.client.HTTPConnection(UP[0], UP[1], timeout=budget)
    conn.request(method, path, body=body, headers=headers)
    return conn, conn.getresponse()

def openai_usage(usage):
    """usage in OpenAI's names (HTTP-9): the upstream's input_tokens and output_tokens become
    prompt_tokens and completion_tokens, total_tokens their sum; other fields are kept."""
    if not isinstance(usage, dict): return usage
    count = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    u = dict(usage)
    prompt, completion = u.pop("input_tokens", None), u.pop("output_tokens", None)
    prompt, completion = u.get("prompt_tokens", prompt), u.get("completion_tokens", completion)
    if not count(prompt) or not count(completion): return usage
    u.update(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
    return u

# ---- the model list: per-credential cache, TTL, LRU bound, stale grace, single flight ----
cache, flights, lock = OrderedDict(), {}, threading.Lock()

def fetch_models(headers):
    def attempt(budget):
        conn, resp = open_upstream("GET", "/api/models", headers, None, budget)
        try:
            if resp.status != 200 or "text/html" in resp.getheader("Content-Type", ""): classify(resp)
            body = resp.read()
            try:
                if isinstance(json.loads(body).get("data"), list): return body
            except (ValueError, AttributeError): pass
            raise Retry("upstream model list is not JSON with data[]", 200)
        finally:
            conn.close()
    return with_retries(attempt)

def models(h, token, v1):
    now = now_ms()
    with lock:
        entry = cache.get(token)
        if entry and now - entry[1] > CACHE_TTL_MS + STALE_GRACE_MS:
            del cache[token]
            entry = None
        if entry: cache.move_to_end(token)
        if entry and now - entry[1] <= CACHE_TTL_MS: return h.serve_models(entry[0], "HIT", v1)
        flight = flights.get(token)
        leader = flight is None
        if leader: flight = flights[token] = {"done": threading.Event()}
    if leader:
        try:
            flight["result"] = fetch_models(h.upstream_headers(False))
        finally:
            with lock:
                del flights[token]
            flight["done"].set()
    flight["done"].wait()
    kind, value = flight["result"]
    with lock:
        if kind == "ok":
            cache[token] = (value, now_ms())
            cache.move_to_end(token)
            while len(cache) > CACHE_MAX: cache.popitem(last=False)
        elif kind == "relay" and value.status == 401: cache.pop(token, None)
        elif kind != "relay" and entry and now_ms() - entry[1] <= CACHE_TTL_MS + STALE_GRACE_MS:
            kind, value = "stale", entry[0]
    if kind in ("ok", "stale"): return h.serve_models(value, "MISS" if kind == "ok" else "STALE", v1)
    h.answer_failure(kind, value)

# ---- streams ----
class SSEParser:
    """WHATWG event-stream lines: LF, CRLF or CR, comments, events split or coalesced.
    An event cut by the end of the body is discarded (WHATWG), so cut() tells the caller one
    was pending; comment lines are counted, as signs of life for the idle clock."""
    def __init__(self):
        self.buf, self.data, self.first, self.comments = "", None, True, 0
        # Where the next feed resumes scanning: the rest of buf holds no line end. Rescanning
        # a long event from its start at every read took seconds for one event of 560 KB,
        # and only complete events reset the idle clock.
        self.scanned = 0
    def finish(self):  # at the end of the body a CR held back for an LF ends its line
        return self.feed("\n") if self.buf.endswith("\r") else []
    def cut(self):
        return self.data is not None or self.buf != ""
    def feed(self, text):
        if self.first and text:
            text, self.first = text[1:] if text[0] == "\ufeff" else text, False
        self.buf += text
        out, start, i = [], 0, self.scanned
        while i < len(self.buf):
            c = self.buf[i]
            if c in "\r\n":
                if c == "\r" and i + 1 == len(self.buf):
                    break  # a CR at the end: an LF may follow
                line = self.buf[start:i]
                if c == "\r" and self.buf[i + 1] == "\n":
                    i += 1
                start = i + 1
                if line == "":
                    if self.data is not None: out.append("\n".join(self.data))
                    self.data = None
                elif line[0] == ":":
                    self.comments += 1
                else:
                    field, _, value = line.partition(":")
                    if field == "data":
                        self.data = (self.data or []) + [value[1:] if value.startswith(" ") else value]
            i += 1
        self.buf, self.scanned = self.buf[start:], i - start
        return out

class Deltas:
    """Cumulative-to-incremental (SSE-4): the request decides the starting mode."""
    def __init__(self, incremental):
        self.inc, self.text, self.pieces = incremental, "", 0
    def push(self, c):
        if not isinstance(c, str) or c == "": return ""
        if self.inc and self.text and ((len(c) > len(self.text) and c.startswith(self.text))
                                       or (self.pieces >= 2 and c == self.text)):
            self.inc = False  # the upstream ignored incremental_output
        if self.inc:
            out = c
            self.text += c
        else:
            i = 0
            while i < min(len(c), len(self.text)) and c[i] == self.text[i]:
                i += 1
            out, self.text = c[i:], c
        self.pieces += 1
        return out

def inband(j):
    ret = j.get("ret")
    return (isinstance(ret, list) and any(isinstance(s, str) and s.startswith("FAIL_") for s in ret)) \
        or j.get("success") is False or j.get("error") is not None

class Stream:
    def __init__(self, body):
        self.id, self.created, self.model = "chatcmpl-" + uuid.uuid4().hex, int(time.time()), body["model"]
        self.deltas, self.role_sent, self.finished = Deltas(body.get("incremental_output") is True), False, False
    def convert(self, data):
        """One upstream event -> ('done'|'bad'|'chunk', text or None)."""
        if data == "[DONE]": return "done", None
        try:
            j = json.loads(data)
        except ValueError: return "bad", "upstream sent an event that is not JSON"
        if not isinstance(j, dict) or inband(j): return "bad", "upstream sent an in-band failure payload"
        choices = j.get("choices") if isinstance(j.get("choices"), list) else []
        ch = choices[0] if choices and isinstance(choices[0], dict) else {}
        content = self.deltas.push((ch.get("delta") or {}).get("content"))
        fr = ch.get("finish_reason") if isinstance(ch.get("finish_reason"), str) else None
        if not content and not fr and self.role_sent: return "chunk", None
        delta = {} if self.role_sent else {"role": "assistant"}
        self.role_sent = True
        if content: delta["content"] = content
        self.finished = self.finished or fr is not None
        return "chunk", self.chunk(delta, fr, j.get("usage"))
    def chunk(self, delta, fr, usage=None):
        c = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": fr}]}
        if usage: c["usage"] = usage
        return "data: %s\n\n" % json.dumps(c, ensure_ascii=False)

def pump(resp, q, stop):
    """Reader thread: upstream bytes (16 KiB reads) onto a queue of 4: at most 64 KiB wait
    for the caller; when the queue is full the upstream is not read (a pause)."""
    try:
        while not stop.is_set():
            data = resp.read1(16384)
            if not data: return q.put(("end", None))
            if q.full():
                stats["stream_pauses"] += 1
            while not stop.is_set():
                try:
                    q.put(("bytes", data), timeout=0.1)
                    break
                except queue.Full: pass
    except socket.timeout: q.put(("error", "upstream stream idle for more than %d ms" % IDLE_MS))
    except Exception as e:  # dropped connection, or closed by us
        q.put(("error", "upstream stream broke (%s)" % type(e).__name__))

class LineRecorder:
    """The request's rfile while http.client.parse_headers reads the head: it reads with
    readline(), which splits only at LF, and keeps each raw line for head_problem()."""
    def __init__(self, f):
        self.f, self.lines = f, []
    def readline(self, *size):
        line = self.f.readline(*size)
        self.lines.append(line)
        return line

SINGLETONS = ("Authorization", "Host", "Content-Length")
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

def head_problem(lines, headers):
    """(message, param) when the head must be refused (INPUT-1, INPUT-2), else None."""
    for line in lines:
        if CONTROL.search(line.removesuffix(b"\n").removesuffix(b"\r")):  # its line end aside
            name = line.split(b":", 1)[0].decode("latin-1").strip()
            return "a control character in the %s header" % name, name.lower()
    for name in SINGLETONS:  # header names compare case-insensitively in get_all
        if len(headers.get_all(name) or ()) > 1:
            return "more than one %s header" % name, name.lower()
    return None

class Handler(BaseHTTPRequestHandler):
    server_version = "py-clean/1"
    def parse_request(self):
        # The email parser behind parse_headers splits "a\rb" into two headers, so control
        # bytes are looked for in the raw lines, recorded as parse_headers reads them.
        rfile = self.rfile = LineRecorder(self.rfile)
        try:
            ok = super().parse_request()
        finally:
            self.rfile = rfile.f
        problem = ok and head_problem(rfile.lines, self.headers)
        if problem:  # refused before the body is read: its framing may be the problem
            self.close_connection, self.extra, self.rid = True, [("Connection", "close")], "-"
            self.send_err(400, problem[0], "invalid_request_error", param=problem[1])
            return False
        return ok
    def log_message(self, fmt, *args):
        sys.stderr.write("%s rid=%s\n" % (fmt % args, getattr(self, "rid", "-")))
    def send_json(self, status, obj, headers=()):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        for k, v in [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + list(headers) + self.extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)  # HEAD: GET's headers, no body
    def send_err(self, status, message, type_="api_error", headers=(), param=None):
        self.send_json(status, {"error": {"message": message, "type": type_, "param": param, "code": None}}, headers)
    def answer_failure(self, kind, e):
        if kind == "relay":
            t = "authentication_error" if e.status == 401 else "invalid_request_error" if e.status < 500 else "api_error"
            return self.send_err(e.status, e.message, t, [("Retry-After", e.retry_after)] if e.retry_after else ())
        if kind == "deadline":
            return self.send_err(504, "request deadline of %d ms reached%s" % (DEADLINE_MS, "; last: " + e.reason if e else ""), "timeout_error")
        if e.timeout:
            return self.send_err(504, "%s (after %d attempts)" % (e.reason, MAX_RETRIES + 1), "timeout_error")
        self.send_err(502, "upstream failed after %d attempts; last: %s" % (MAX_RETRIES + 1, e.reason), "upstream_error")
    def upstream_headers(self, json_body):
        h = {"Authorization": self.auth, "X-Request-Id": self.rid}
        if json_body:
            h["Content-Type"] = "application/json"
        return h
    def serve_models(self, body, mark, v1):
        if v1:
            data = [{"id": m.get("id"), "object": "model", "owned_by": m.get("owned_by") or "qwen",
                     "created": m.get("created") if isinstance(m.get("created"), (int, float)) else 0}
                    for m in json.loads(body)["data"]]
            body = json.dumps({"object": "list", "data": data}).encode()
        self.send_json(200, body, [("X-Cache", mark)])
    def handle_any(self):
        self.rid = self.headers.get("X-Request-Id") or str(uuid.uuid4())
        path, origin = self.path.split("?")[0], self.headers.get("Origin")
        self.extra = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")] if origin in CORS_ORIGINS else []
        size = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(size) if size else b""
        if self.command == "OPTIONS" and origin:
            if self.extra:
                self.extra += [("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                               ("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id")]
            self.send_response(204)
            for k, v in self.extra: self.send_header(k, v)
            return self.end_headers()
        if path == "/" and self.command == "GET":
            return self.send_json(200, {"name": "py-clean", "routes": list(ROUTES)})
        if path == "/healthz" and self.command == "GET":
            return self.send_json(200, {"status": "ok", "stream_pauses": stats["stream_pauses"]})
        method = ROUTES.get(path)
        if not method: return self.send_err(404, "no route " + path, "invalid_request_error")
        if self.command != method and not (self.command == "HEAD" and method == "GET"):  # INPUT-4
            return self.send_err(405, "%s not allowed on %s" % (self.command, path), "invalid_request_error", [("Allow", method)])
        if size > MAX_BODY:
            return self.send_err(413, "request body over %d bytes" % MAX_BODY, "invalid_request_error")
        self.auth = self.headers.get("Authorization") or ""
        m = re.match(r"^bearer[ \t]+(\S+)[ \t]*$", self.auth, re.I)
        if not m: return self.send_err(401, "a Bearer token is required", "authentication_error")
        self.extra.append(("X-Request-Id", self.rid))
        if method == "GET": return models(self, m.group(1), path.startswith("/v1"))
        self.chat(raw)
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any
    def chat(self, raw):
        try:
            body = json.loads(raw)
        except ValueError: return self.send_err(400, "the body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return self.send_err(400, "the body must be a JSON object", "invalid_request_error")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self.send_err(400, "model is required (a string)", "invalid_request_error", param="model")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self.send_err(400, "messages must be a non-empty array", "invalid_request_error", param="messages")
        headers = self.upstream_headers(True)
        if body.get("stream") is True: return self.stream(raw, body, headers)
        def attempt(budget):
            conn, resp = open_upstream("POST", "/api/chat/completions", headers, raw, budget)
            try:
                if resp.status != 200 or "text/html" in resp.getheader("Content-Type", ""): classify(resp)
                text = resp.read()
                try:
                    j = json.loads(text)
                except ValueError: raise Retry("upstream completion is not JSON", 200)
                if isinstance(j, dict) and "usage" in j:  # OpenAI's usage names (HTTP-9)
                    j["usage"] = openai_usage(j["usage"])
                    text = json.dumps(j, ensure_ascii=False).encode()
                return text
            finally:
                conn.close()
        kind, value = with_retries(attempt)
        if kind == "ok": return self.send_json(200, value)
        self.answer_failure(kind, value)
    def caller_gone(self):
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            return bool(r) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError: return True
    def stream(self, raw, body, headers):
        st, state = Stream(body), {}
        def attempt(budget):  # until the first good event nothing reaches the caller (SSE-7)
            conn, resp = open_upstream("POST", "/api/chat/completions", headers, raw, budget)
            try:
                ct = resp.getheader("Content-Type", "")
                if resp.status != 200 or "text/html" in ct: classify(resp)
                if "text/event-stream" not in ct:
                    resp.read()
                    raise Retry("upstream answered %s, not a stream" % (ct or "no content type"), 200)
                decoder, parser = codecs.getincrementaldecoder("utf-8")("replace"), SSEParser()
                events = []
                while not events:
                    data = resp.read1(65536)
                    events = parser.feed(decoder.decode(data)) if data else parser.finish()
                    if not data and not events: raise Retry("upstream stream ended before its first event", 200)
                kind, text = st.convert(events[0])
                if kind != "chunk": raise Retry(text or "upstream stream was empty", 200)
                state.update(conn=conn, resp=resp, decoder=decoder, parser=parser,
                             pending=[(kind, text)] + [st.convert(e) for e in events[1:]])
                return True
            finally:
                if "conn" not in state: conn.close()
        kind, value = with_retries(attempt, self.caller_gone)
        if kind == "ok": self.relay(st, state)
        elif kind != "gone": self.answer_failure(kind, value)
    def relay(self, st, s):
        self.send_response(200)
        for k, v in [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")] + self.extra:
            self.send_header(k, v)
        self.end_headers()
        s["conn"].sock.settimeout(IDLE_MS / 1000.0)
        q, stop = queue.Queue(maxsize=4), threading.Event()
        # last_alive: the last complete event or comment (or the end of a write the caller was
        # slow to take), not the last read: bytes that complete neither are silence (SSE-10).
        error, done, last_write, last_alive = None, False, now_ms(), now_ms()
        def emit(kind, text):
            nonlocal error, done, last_write, last_alive
            if kind == "done": done = True
            elif kind == "bad": error = text
            elif text:
                self.wfile.write(text.encode())
                last_write = last_alive = now_ms()
            return done or error
        try:
            for kind, text in s["pending"]:
                if emit(kind, text): break
            if not done and not error:
                threading.Thread(target=pump, args=(s["resp"], q, stop), daemon=True).start()
            while not done and not error:
                if now_ms() - last_alive > IDLE_MS:
                    error = "upstream stream idle for more than %d ms" % IDLE_MS
                    break
                try:
                    what, item = q.get(timeout=0.025)
                except queue.Empty:
                    if self.caller_gone(): return
                    if now_ms() - last_write >= KEEPALIVE_MS:
                        self.wfile.write(b": keep-alive\n\n")
                        last_write = now_ms()
                    continue
                if what == "error":
                    error = item
                    break
                parser, comments = s["parser"], s["parser"].comments
                events = parser.finish() if what == "end" else parser.feed(s["decoder"].decode(item))
                if events or parser.comments > comments: last_alive = now_ms()
                for ev in events:
                    if emit(*st.convert(ev)): break
                if what == "end":
                    # A clean end inside an event is a truncation, not an answer (SSE-17).
                    if not done and not error and parser.cut(): error = "upstream stream ended inside an event"
                    break
            if error:
                err = {"error": {"message": error, "type": "upstream_error", "param": None, "code": None}}
                return self.wfile.write(("data: %s\n\n" % json.dumps(err)).encode())
            if not st.finished: self.wfile.write(st.chunk({}, "stop").encode())
            self.wfile.write(b"data: [DONE]\n\n")
        except OSError:
            pass  # the caller left
        finally:
            stop.set()
            try:
                s["conn"].sock.shutdown(socket.SHUT_RDWR)
            except OSError: pass
            s["conn"].close()

def main():
    global UP
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--upstream", default="https://chat.qwenlm.ai")
    a = ap.parse_args()
    u = urlsplit(a.upstream)
    UP = (u.hostname, u.port or 80)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print("listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()

if __name__ == "__main__": main()
