#!/usr/bin/env python3
"""A target that answers every request with bytes no report may hold as they are: invalid
UTF-8, control characters, XML and JSON metacharacters, in its body and a header. For the
test that JUnit and JSON reports stay valid whatever a target sends.

    garbage_target.py --port 0     (prints "listening on http://127.0.0.1:PORT")
"""
import argparse
import http.server

GARBAGE = (b'{"error": "\xff\xfe bad \x01\x02\x1b[31m <tag attr="x"> & ]]> \xed\xa0\x80 '
           b'\xc3 \x00 end"}')


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Garbage", "\x7fa\x01b")
        self.send_header("Content-Length", str(len(GARBAGE)))
        self.end_headers()
        self.wfile.write(GARBAGE)

    do_GET = do_POST = do_OPTIONS = do_PUT = do_DELETE = answer

    def log_message(self, fmt, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    opts = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", opts.port), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
