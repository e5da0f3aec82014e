#!/usr/bin/env python3
"""Sends exactly N requests, one after the other, over one kept-alive connection.

bench/instructions.sh drives it between callgrind dumps of qwen-proxy, so that the
proxy's instruction count of a phase is N requests and nothing else the client could
vary (one connect, no retries, no pipelining). `stream` is the chat with "stream": true,
read to its end. Exits 1 on any answer other than 200, or a stream that does not end
with data: [DONE].

Usage: instr_client.py PORT models|chat|stream N
"""
import http.client
import json
import sys

CHAT_REQUEST = {"model": "qwen-max-latest",
                "messages": [{"role": "user", "content": "Say hello."}]}
BODIES = {"chat": json.dumps(CHAT_REQUEST),
          "stream": json.dumps(dict(CHAT_REQUEST, stream=True))}


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ("models", "chat", "stream"):
        sys.stderr.write(__doc__)
        return 2
    port, kind, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": "Bearer bench-instructions"}
    if kind != "models":
        headers["Content-Type"] = "application/json"
    for i in range(n):
        if kind == "models":
            conn.request("GET", "/api/models", headers=headers)
        else:
            conn.request("POST", "/api/chat/completions", body=BODIES[kind], headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        cut = kind == "stream" and not body.endswith(b"data: [DONE]\n\n")
        if resp.status != 200 or not body or cut:
            sys.stderr.write("instr_client: request %d: status %d: %r\n"
                             % (i, resp.status, body[:200]))
            return 1
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
