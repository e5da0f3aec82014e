#!/usr/bin/env python3
"""probe.py: checks, outside qwen-conformance, properties behind the gallery's expected
verdicts that the suite (as of SPEC 1.1.1) does not exercise. Run through run.sh:

    conformance/rogues/run.sh ROGUE --probe

Each probe prints one line `probe NAME: OK|DEFECT|INFO: what it saw`; the exit status is 0.

  concurrent-utf8  SSE-5 with 3 streams at once, each with characters cut across writes
                   (the suite runs one stream at a time).
  parallel-callers a model-list request while another caller's stream is running (no
                   requirement covers serving callers concurrently).
  html-models      a 200 HTML page (captcha) on the MODEL-LIST route: relayed? cached?
                   (RETRY-2 and CACHE-3; the suite's RETRY-2 tests use the chat route only).
  own-keepalive    whether the proxy's plain answers, with no upstream header scripted,
                   already carry Keep-Alive (then that header is the proxy's own, not relayed).
"""
import argparse, http.client, json, threading, time, uuid
from urllib.parse import urlsplit

def request(base, method, path, token=None, body=None, headers=None, timeout=15):
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    if body is not None:
        h["Content-Type"] = "application/json"
        body = json.dumps(body) if not isinstance(body, (bytes, str)) else body
    conn.request(method, path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data

def queue_steps(mock, token, route, steps):
    request(mock, "POST", "/__mock/scenarios", body={"token": token, "route": route, "steps": steps})

def journal(mock, token):
    return json.loads(request(mock, "GET", "/__mock/journal?token=" + token)[2])["entries"]

def stream_text(data):
    text = ""
    for block in data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                try:
                    c = json.loads(line[5:])
                    text += ((c.get("choices") or [{}])[0].get("delta") or {}).get("content") or ""
                except ValueError:
                    pass
    return text

def token():
    return "probe-" + uuid.uuid4().hex[:20]

def probe_concurrent_utf8(proxy, mock, model):
    msg = "probe split characters"
    body = {"model": model, "messages": [{"role": "user", "content": msg}]}
    want = json.loads(request(mock, "POST", "/api/chat/completions", token(), dict(body, stream=False))[2])
    want = want["choices"][0]["message"]["content"]
    results = []

    def one():
        t = token()
        queue_steps(mock, t, "chat", [{"stream": {"chunks": 4, "split_utf8": True}}])
        status, _, data = request(proxy, "POST", "/api/chat/completions", t,
                                  dict(body, stream=True, incremental_output=True))
        results.append((status, stream_text(data)))
    threads = [threading.Thread(target=one) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    bad = [r for r in results if r[0] != 200 or r[1] != want]
    fffd = sum(r[1].count("\ufffd") for r in results)
    verdict = "DEFECT" if bad else "OK"
    print("probe concurrent-utf8: %s: %d of 3 concurrent streams (HTTP %s) differ from the upstream's "
          "text (%d U+FFFD in all)" % (verdict, len(bad), ",".join(str(r[0]) for r in results), fffd))

def probe_parallel_callers(proxy, mock, model):
    t = token()
    queue_steps(mock, t, "chat", [{"stream": {"chunks": 6, "chunk_delay_ms": 300}}])
    body = {"model": model, "messages": [{"role": "user", "content": "probe slow"}], "stream": True,
            "incremental_output": True}
    th = threading.Thread(target=request, args=(proxy, "POST", "/api/chat/completions", t, body))
    th.start()
    time.sleep(0.3)
    start = time.monotonic()
    status = request(proxy, "GET", "/api/models", token())[0]
    took = (time.monotonic() - start) * 1000
    th.join()
    verdict = "DEFECT" if took > 1000 else "OK"
    print("probe parallel-callers: %s: GET /api/models (HTTP %d) took %.0f ms while another caller's "
          "2 s stream was running" % (verdict, status, took))

def probe_html_models(proxy, mock, model):
    t = token()
    queue_steps(mock, t, "models", [{"html": "captcha"}])
    s1, h1, b1 = request(proxy, "GET", "/api/models", t)
    s2, h2, b2 = request(proxy, "GET", "/api/models", t)
    n = len(journal(mock, t))
    html1, html2 = b"x5secdata" in b1, b"x5secdata" in b2
    verdict = "DEFECT" if html1 or html2 else "OK"
    print("probe html-models: %s: first GET HTTP %d %s (%s); second GET HTTP %d %s; %d upstream requests"
          % (verdict, s1, "carried the captcha page" if html1 else "no HTML", h1.get("content-type"),
             s2, "carried the captcha page again (cached)" if html2 else "no HTML", n))

def probe_own_keepalive(proxy, mock, model):
    status, h, _ = request(proxy, "GET", "/api/models", token())
    ka = h.get("keep-alive")
    print("probe own-keepalive: INFO: a plain GET /api/models (nothing scripted upstream) answers HTTP %d "
          "with Keep-Alive: %s, Connection: %s" % (status, ka or "(none)", h.get("connection") or "(none)"))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--mock", required=True)
    a = ap.parse_args()
    models = json.loads(request(a.mock, "GET", "/api/models", token())[2])["data"]
    model = models[0]["id"]
    for p in (probe_own_keepalive, probe_html_models, probe_parallel_callers, probe_concurrent_utf8):
        try:
            p(a.proxy, a.mock, model)
        except Exception as e:  # a dead proxy, a timeout
            print("probe %s: DEFECT: %s: %s" % (p.__name__[6:].replace("_", "-"), type(e).__name__, e))

if __name__ == "__main__":
    main()
