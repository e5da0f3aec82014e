#!/usr/bin/env python3
"""Legitimate traffic through qwen-proxy during a slowloris, a half-close flood and a
connection flood (see bench/README.md, "Attacks: ...").

Starts qwen-mock once and a fresh qwen-proxy for every phase, all on 127.0.0.1 with
ephemeral ports. Legitimate callers come from 127.0.0.1, attackers from 127.0.0.2 (and up
to 127.0.0.20 for the connection flood). Each phase runs once against the proxy with its
defences and once with them relaxed (the behaviour before admission control), so the
figures show what the defences buy. Attackers run in their own processes so that their
Python loops never hold the GIL of the threads that time the legitimate requests.

Exit status: 0 when legitimate traffic during the slowloris and the half-close flood met
--min-success and --max-p99-ms against the defended proxy and no proxy crashed; 1 otherwise;
2 for bad usage or a program that would not start.

stdlib only; Linux only (/proc, IP_BIND_ADDRESS_NO_PORT).
"""

import argparse
import errno
import heapq
import json
import math
import os
import resource
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

ATTACKS = ("slowloris", "halfclose", "flood")
# Before admission control: no receive deadline, no per-client limit, and libmicrohttpd's
# idle timeout at 120 s (the old MHD_OPTION_CONNECTION_TIMEOUT). The half-close watchdog
# and the soft limit's 503 cannot be turned off.
RELAXED_FLAGS = "--receive-timeout 86400 --max-connections-per-client 1000000 --idle-timeout 120"
# Linux <netinet/in.h>: choose the source port at connect(), not bind(), so that ports in
# TIME_WAIT can be reused (net.ipv4.tcp_tw_reuse) when the source address is bound.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# The head a slowloris trickles; it never ends, whatever the interval.
SLOW_HEAD = (b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n"
             + b"X-Padding: " + b"a" * 4000)


def now():
    return time.monotonic()


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def source_socket(src, blocking):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    s.bind((src, 0))
    s.setblocking(blocking)
    return s


# ---------------------------------------------------------------- attackers (own process)

class Slot:
    """One connection the attacker wants to keep open; reopened when cut."""
    __slots__ = ("src", "sock", "state", "gen", "sent", "since")

    def __init__(self, src):
        self.src = src
        self.sock = None
        self.state = "idle"  # idle | connecting | held
        self.gen = 0
        self.sent = 0
        self.since = 0.0


def attack_hold(a):
    """Holds --count connections spread over --sources; with --interval, trickles one byte
    of a never-ending head every interval (slowloris), else sends nothing (flood)."""
    sources = a.sources.split(",")
    dst = ("127.0.0.1", a.port)
    sel = selectors.DefaultSelector()
    slots = [Slot(sources[i % len(sources)]) for i in range(a.count)]
    timers = []  # (when, seq, kind, slot index, generation)
    seq = 0
    st = {"opened": 0, "connected": 0, "cut": 0, "connect_err": 0, "connect_timeout": 0,
          "answered": 0, "bytes_sent": 0}
    held = 0
    connecting = 0
    start = now()
    end = start + a.duration

    def schedule(when, kind, i):
        nonlocal seq
        seq += 1
        heapq.heappush(timers, (when, seq, kind, i, slots[i].gen))

    def drop(i, counter):
        nonlocal held, connecting
        sl = slots[i]
        if sl.sock is not None:
            try:
                sel.unregister(sl.sock)
            except (KeyError, ValueError):
                pass
            sl.sock.close()
            sl.sock = None
        if sl.state == "held":
            held -= 1
        elif sl.state == "connecting":
            connecting -= 1
        sl.state = "idle"
        sl.gen += 1
        st[counter] += 1
        schedule(now() + a.reconnect_delay, "connect", i)

    def send_byte(i):
        sl = slots[i]
        if sl.sent >= len(SLOW_HEAD):
            return True
        try:
            n = sl.sock.send(SLOW_HEAD[sl.sent:sl.sent + 1])
        except BlockingIOError:
            return True
        except OSError:
            return False
        sl.sent += n
        st["bytes_sent"] += n
        return True

    def connect(i):
        nonlocal connecting
        sl = slots[i]
        try:
            s = source_socket(sl.src, False)
        except OSError:
            st["connect_err"] += 1
            schedule(now() + max(a.reconnect_delay, 0.1), "connect", i)
            return
        rc = s.connect_ex(dst)
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            st["connect_err"] += 1
            schedule(now() + max(a.reconnect_delay, 0.1), "connect", i)
            return
        sl.sock = s
        sl.state = "connecting"
        sl.since = now()
        sl.sent = 0
        connecting += 1
        st["opened"] += 1
        sel.register(s, selectors.EVENT_WRITE, i)

    def connected(i):
        nonlocal held, connecting
        sl = slots[i]
        err = sl.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            drop(i, "connect_err")
            return
        connecting -= 1
        held += 1
        sl.state = "held"
        st["connected"] += 1
        sel.modify(sl.sock, selectors.EVENT_READ, i)
        if a.interval > 0:
            if not send_byte(i):
                drop(i, "cut")
                return
            schedule(now() + a.interval, "byte", i)

    ramp = max(a.ramp, 0.001)
    for i in range(a.count):
        schedule(start + ramp * i / a.count, "connect", i)
    next_report = start + 0.5
    last_scan = start
    while True:
        t = now()
        if t >= end:
            break
        wait = min(next_report, end) - t
        if timers:
            wait = min(wait, timers[0][0] - t)
        for key, mask in sel.select(max(wait, 0)):
            i = key.data
            sl = slots[i]
            if sl.state == "connecting":
                connected(i)
            elif sl.state == "held":
                try:
                    data = sl.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    st["answered"] += data.startswith(b"HTTP/")
                    continue
                drop(i, "cut")
        t = now()
        while timers and timers[0][0] <= t:
            _, _, kind, i, gen = heapq.heappop(timers)
            sl = slots[i]
            if gen != sl.gen:
                continue
            if kind == "connect" and sl.state == "idle":
                connect(i)
            elif kind == "byte" and sl.state == "held":
                if send_byte(i):
                    schedule(t + a.interval, "byte", i)
                else:
                    drop(i, "cut")
        if t - last_scan >= 0.5:
            last_scan = t
            for i, sl in enumerate(slots):
                if sl.state == "connecting" and t - sl.since >= a.connect_timeout:
                    drop(i, "connect_timeout")
        if t >= next_report:
            next_report += 0.5
            emit(dict(st, t=round(t - start, 2), held=held, connecting=connecting))
    emit(dict(st, t=round(now() - start, 2), held=held, connecting=connecting, final=True))
    for sl in slots:
        if sl.sock is not None:
            sl.sock.close()


def attack_halfclose(a):
    """Connect, send one byte, close at once, at --rate per second (0: as fast as possible)."""
    dst = ("127.0.0.1", a.port)
    st = {"opened": 0, "connected": 0, "connect_err": 0, "connect_timeout": 0}
    start = now()
    end = start + a.duration
    next_report = start + 0.5
    done = 0
    sources = a.sources.split(",")
    while True:
        t = now()
        if t >= end:
            break
        if t >= next_report:
            next_report += 0.5
            emit(dict(st, t=round(t - start, 2), held=0, connecting=0))
        if a.rate > 0:
            ahead = done / a.rate - (t - start)
            if ahead > 0:
                time.sleep(min(ahead, 0.05))
                continue
        done += 1
        st["opened"] += 1
        try:
            s = source_socket(sources[done % len(sources)], True)
        except OSError:
            st["connect_err"] += 1
            continue
        s.settimeout(a.connect_timeout)
        try:
            s.connect(dst)
            s.send(b"G")
            st["connected"] += 1
        except socket.timeout:
            st["connect_timeout"] += 1
        except OSError:
            st["connect_err"] += 1
        s.close()
    emit(dict(st, t=round(now() - start, 2), held=0, connecting=0, final=True))


def attacker_main(argv):
    p = argparse.ArgumentParser(prog="attack.py --attacker")
    p.add_argument("--attacker", choices=("hold", "halfclose"), required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--sources", default="127.0.0.2")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--ramp", type=float, default=1.0)
    p.add_argument("--slowloris-sources", type=int, default=1,
                   help="source addresses 127.0.0.2 and up (1)")
    p.add_argument("--reconnect-delay", type=float, default=0.5)
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=0.0)
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    raise_nofile()
    if a.attacker == "hold":
        attack_hold(a)
    else:
        attack_halfclose(a)
    return 0


# ---------------------------------------------------------------- legitimate callers

def chat_body():
    return json.dumps({"model": "qwen-max-latest", "stream": False,
                       "messages": [{"role": "user", "content": "ping"}]}).encode()


def legit_request(port, kind, token, timeout):
    """One request on a fresh connection. Returns (failure kind or None, status)."""
    if kind == "models":
        req = (f"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n").encode()
        expect = b'"data"'
    else:
        body = chat_body()
        req = (f"POST /api/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        expect = b'"choices"'
    deadline = now() + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", port))
        except socket.timeout:
            return "connect_timeout", 0
        except ConnectionRefusedError:
            return "refused", 0
        except OSError:
            return "connect_error", 0
        try:
            s.sendall(req)
        except socket.timeout:
            return "timeout", 0
        except OSError:
            return "send_error", 0
        got = bytearray()
        while True:
            left = deadline - now()
            if left <= 0:
                return ("timeout" if not got else "timeout_in_body"), 0
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return ("timeout" if not got else "timeout_in_body"), 0
            except OSError:
                if not got:
                    return "reset", 0
                break
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    if not got.startswith(b"HTTP/1."):
        return "no_response", 0
    try:
        status = int(got.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return "bad_status_line", 0
    if status == 200:
        return (None if expect in got else "bad_body"), 200
    return f"status_{status}", status


class Legit:
    """--legit-threads callers, alternating the model list and a chat completion."""

    def __init__(self, port, args):
        self.port = port
        self.args = args
        self.stop = threading.Event()
        self.results = []  # (failure or None, status, latency s)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(args.legit_threads)]

    def run(self, i):
        token = f"legit-{i}"
        n = 0
        while not self.stop.is_set():
            kind = "models" if n % 2 == 0 else "chat"
            n += 1
            t0 = now()
            failure, status = legit_request(self.port, kind, token, self.args.legit_timeout)
            dt = now() - t0
            with self.lock:
                self.results.append((failure, status, dt))
            pause = self.args.legit_interval_ms / 1000.0 - dt
            if pause > 0:
                self.stop.wait(pause)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(self.args.legit_timeout + 2)
        with self.lock:
            return list(self.results)


# ---------------------------------------------------------------- processes and sampling

def start_program(cmd, what):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    deadline = now() + 10
    line = b""
    while now() < deadline and not line.endswith(b"\n"):
        r, _, _ = select.select([p.stdout], [], [], max(deadline - now(), 0))
        if not r:
            break
        c = os.read(p.stdout.fileno(), 1)
        if not c:
            break
        line += c
    text = line.decode(errors="replace").strip()
    if not text.startswith("listening on http://"):
        p.kill()
        p.wait()
        sys.exit(f"attack.py: {what} did not start: {' '.join(cmd)} printed {text!r}")
    return p, int(text.rsplit(":", 1)[1])


def stop_program(p):
    """SIGTERM, then SIGKILL after 10 s. Returns the exit status (negative: a signal)."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return "killed"
    return p.returncode


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def close_wait(port):
    """Sockets on the proxy's port whose peer closed and the proxy did not (CLOSE-WAIT)."""
    n = 0
    want = f":{port:04X} "
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split(None, 4)
                if parts[3] == "08" and (parts[1] + " ").endswith(want):
                    n += 1
    except OSError:
        pass
    return n


class Sampler(threading.Thread):
    """Peak RSS, open fds and CLOSE-WAIT sockets of the proxy, every --sample-ms."""

    def __init__(self, pid, port, period):
        super().__init__(daemon=True)
        self.pid, self.port, self.period = pid, port, period
        self.stop = threading.Event()
        self.rss = self.fds = self.cw = 0

    def run(self):
        while not self.stop.is_set():
            self.rss = max(self.rss, proc_rss_kib(self.pid))
            self.fds = max(self.fds, proc_fds(self.pid))
            self.cw = max(self.cw, close_wait(self.port))
            self.stop.wait(self.period)


class Attacker:
    """One or more attacker processes and what they report."""

    def __init__(self, cmds):
        self.procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                      for c in cmds]
        self.last = [dict() for _ in cmds]
        self.held_samples = []  # (t, total held) after the ramp
        self.window = None
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self.read, args=(i,), daemon=True)
                        for i in range(len(cmds))]
        for r in self.readers:
            r.start()

    def read(self, i):
        for line in self.procs[i].stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.last[i] = rec
                if self.window is not None and not rec.get("final"):
                    self.held_samples.append(sum(r.get("held", 0) for r in self.last))

    def measure_from_now(self):
        with self.lock:
            self.window = now()
            self.held_samples = []

    def finish(self):
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.terminate()
                p.wait()
        for r in self.readers:
            r.join(2)
        with self.lock:
            total = {}
            for rec in self.last:
                for k, v in rec.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "t":
                        total[k] = total.get(k, 0) + v
            total["t"] = max((rec.get("t", 0) for rec in self.last), default=0)
            hs = self.held_samples
            total["held_peak"] = max(hs, default=0)
            total["held_mean"] = sum(hs) / len(hs) if hs else 0
            return total


def attacker_cmds(kind, port, args, duration):
    base = [sys.executable, os.path.abspath(__file__), "--port", str(port),
            "--duration", f"{duration:.2f}", "--reconnect-delay", str(args.reconnect_delay)]
    if kind == "slowloris":
        sources = ",".join(f"127.0.0.{2 + i}" for i in range(args.slowloris_sources))
        return [base + ["--attacker", "hold", "--sources", sources,
                        "--count", str(args.slowloris_connections),
                        "--interval", str(args.slowloris_interval)]]
    if kind == "halfclose":
        w = max(args.halfclose_workers, 1)
        sources = ",".join(f"127.0.0.{2 + i}" for i in range(args.halfclose_sources))
        return [base + ["--attacker", "halfclose", "--sources", sources,
                        "--rate", str(args.halfclose_rate / w), "--connect-timeout", "1"]
                for _ in range(w)]
    sources = ",".join(f"127.0.0.{2 + i}" for i in range(args.flood_sources))
    return [base + ["--attacker", "hold", "--sources", sources,
                    "--count", str(args.flood_connections), "--ramp", "2"]]


# ---------------------------------------------------------------- phases and the table

def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def run_phase(kind, mode, mock_port, args):
    flags = (args.relaxed_flags if mode == "relaxed" else args.defended_flags).split()
    cmd = [os.path.join(args.build, "proxy", "qwen-proxy"), "--listen", "127.0.0.1",
           "--port", "0", "--upstream", f"http://127.0.0.1:{mock_port}", "--upstream-dialect", "v1",
           "--log-format", "off"] + flags
    proxy, port = start_program(cmd, "qwen-proxy")
    sampler = Sampler(proxy.pid, port, args.sample_ms / 1000.0)
    attacker = None
    try:
        sampler.start()
        if kind != "baseline":
            attacker = Attacker(attacker_cmds(kind, port, args, args.ramp + args.seconds + 0.5))
            time.sleep(args.ramp)
            attacker.measure_from_now()
        legit = Legit(port, args)
        legit.start()
        time.sleep(args.seconds)
        results = legit.finish()
        att = attacker.finish() if attacker else {}
    finally:
        # Interrupted: leave no attacker or proxy behind.
        for ap in attacker.procs if attacker else []:
            if ap.poll() is None:
                ap.terminate()
        sampler.stop.set()
        status = stop_program(proxy)
    sampler.join()

    lat = sorted(r[2] for r in results)
    n = len(results)
    ok = sum(1 for r in results if r[0] is None)
    answered = sum(1 for r in results if r[1] in (200, 503) and r[0] in (None, "status_503"))
    fails = {}
    for r in results:
        if r[0] is not None:
            fails[r[0]] = fails.get(r[0], 0) + 1
    dur = att.get("t", 0) or 1
    return {
        "phase": kind, "proxy": mode, "legit": n,
        "success_pct": 100.0 * ok / n if n else 0.0,
        "answered_pct": 100.0 * answered / n if n else 0.0,
        "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
        "max_ms": 1000 * (lat[-1] if lat else 0), "failures": fails,
        "rss_mib": sampler.rss / 1024.0, "fds": sampler.fds, "close_wait": sampler.cw,
        "held_peak": att.get("held_peak", 0), "held_mean": att.get("held_mean", 0),
        "attack_conn_per_s": att.get("opened", 0) / dur if att else 0,
        "attacker": att, "proxy_exit": status,
    }


COLUMNS = [("phase", 9), ("proxy", 8), ("legit", 6), ("ok %", 7), ("answ %", 7),
           ("p50 ms", 7), ("p99 ms", 7), ("RSS MiB", 8), ("fds", 5), ("CLWAIT", 6),
           ("held pk/mean", 12), ("att conn/s", 10), ("failures", 0)]


def row_text(r):
    fails = ", ".join(f"{k}={v}" for k, v in sorted(r["failures"].items())) or "-"
    if r["proxy_exit"] != 0:
        fails += f"; PROXY EXIT {r['proxy_exit']}"
    held = f"{r['held_peak']}/{r['held_mean']:.0f}" if r["phase"] != "baseline" else "-"
    rate = f"{r['attack_conn_per_s']:.0f}" if r["phase"] != "baseline" else "-"
    cells = [r["phase"], r["proxy"], str(r["legit"]), f"{r['success_pct']:.2f}",
             f"{r['answered_pct']:.2f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
             f"{r['rss_mib']:.1f}", str(r["fds"]), str(r["close_wait"]), held, rate, fails]
    return " ".join(c.rjust(w) if w else c for c, (_, w) in zip(cells, COLUMNS))


def header_text():
    return " ".join(h.rjust(w) if w else h for h, w in COLUMNS)


def main():
    if "--attacker" in sys.argv[1:]:
        return attacker_main(sys.argv[1:])
    p = argparse.ArgumentParser(
        description="Legitimate traffic through qwen-proxy during a slowloris, a half-close "
                    "flood and a connection flood, with the defences on and relaxed.")
    p.add_argument("--build", default="build", help="build directory (build)")
    p.add_argument("--seconds", type=float, default=30, help="length of each phase (30)")
    p.add_argument("--ramp", type=float, default=2,
                   help="seconds an attack runs before legitimate traffic is measured (2)")
    p.add_argument("--attacks", default=",".join(ATTACKS),
                   help="comma-separated subset of " + ",".join(ATTACKS))
    p.add_argument("--modes", default="defended,relaxed", help="defended,relaxed")
    p.add_argument("--relaxed-flags", default=RELAXED_FLAGS,
                   help=f"proxy flags of the relaxed runs ({RELAXED_FLAGS})")
    p.add_argument("--defended-flags", default="",
                   help="extra proxy flags of the defended runs (none: the defaults)")
    p.add_argument("--min-success", type=float, default=99.0,
                   help="lowest legit success %% allowed during slowloris and halfclose (99)")
    p.add_argument("--max-p99-ms", type=float, default=1000.0,
                   help="highest legit p99 allowed during slowloris and halfclose (1000)")
    p.add_argument("--legit-threads", type=int, default=4, help="legitimate callers (4)")
    p.add_argument("--legit-interval-ms", type=float, default=50,
                   help="each caller starts a request at most this often (50)")
    p.add_argument("--legit-timeout", type=float, default=5, help="per request, s (5)")
    p.add_argument("--slowloris-connections", type=int, default=1000)
    p.add_argument("--slowloris-interval", type=float, default=10,
                   help="seconds between the bytes of a slowloris head (10)")
    p.add_argument("--slowloris-sources", type=int, default=1,
                   help="source addresses 127.0.0.2 and up (1)")
    p.add_argument("--reconnect-delay", type=float, default=0.5,
                   help="seconds before a cut attacker connection is opened again (0.5)")
    p.add_argument("--halfclose-rate", type=float, default=3000,
                   help="half-closed connections per second, 0 = as fast as possible (3000)")
    p.add_argument("--halfclose-workers", type=int, default=2,
                   help="attacker processes sharing the rate (2)")
    p.add_argument("--halfclose-sources", type=int, default=1,
                   help="source addresses 127.0.0.2 and up (1)")
    p.add_argument("--flood-connections", type=int, default=6000,
                   help="idle connections the flood tries to hold (6000)")
    p.add_argument("--flood-sources", type=int, default=19,
                   help="source addresses 127.0.0.2 and up (19)")
    p.add_argument("--flood-min-answered", type=float, default=0,
                   help="lowest %% of legit requests answered (200 or 503) during the "
                        "flood against the defended proxy; 0 = not checked (0)")
    p.add_argument("--flood-max-p99-ms", type=float, default=0,
                   help="highest legit p99 during the flood against the defended proxy; "
                        "0 = not checked (0)")
    p.add_argument("--sample-ms", type=float, default=250)
    p.add_argument("--json", help="also write every row as JSON to this file")
    args = p.parse_args()
    attacks = [a for a in args.attacks.split(",") if a]
    modes = [m for m in args.modes.split(",") if m]
    if any(a not in ATTACKS for a in attacks) or any(m not in ("defended", "relaxed")
                                                       for m in modes):
        p.error("unknown attack or mode")
    if not all(1 <= n <= 19 for n in (args.flood_sources, args.halfclose_sources,
                                      args.slowloris_sources)):
        p.error("--*-sources must be 1..19")
    for prog in ("proxy/qwen-proxy", "mockupstream/qwen-mock"):
        if not os.access(os.path.join(args.build, prog), os.X_OK):
            p.error(f"no {prog} in {args.build} (build it: bash ci/build.sh {args.build})")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cleanups below
    nofile = raise_nofile()
    need = max(args.slowloris_connections, args.flood_connections) + 200
    print(f"# RLIMIT_NOFILE {nofile}, {os.cpu_count()} CPUs, phases of {args.seconds:g} s "
          f"after a {args.ramp:g} s ramp", flush=True)
    if nofile < need:
        print(f"# warning: RLIMIT_NOFILE {nofile} < {need}: attackers will hit it", flush=True)

    mock, mock_port = start_program(
        [os.path.join(args.build, "mockupstream", "qwen-mock"), "--host", "127.0.0.1",
         "--port", "0", "--quiet"], "qwen-mock")
    rows = []
    try:
        print(header_text(), flush=True)
        for kind in ["baseline"] + attacks:
            for mode in modes:
                r = run_phase(kind, mode, mock_port, args)
                rows.append(r)
                print(row_text(r), flush=True)
    finally:
        stop_program(mock)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)

    bad = []
    for r in rows:
        if r["proxy_exit"] != 0:
            bad.append(f"{r['phase']}/{r['proxy']}: proxy exit status {r['proxy_exit']}")
        if r["proxy"] == "defended" and r["phase"] in ("slowloris", "halfclose"):
            if r["success_pct"] < args.min_success:
                bad.append(f"{r['phase']}: legit success {r['success_pct']:.2f} % "
                           f"< {args.min_success:g} %")
            if r["p99_ms"] > args.max_p99_ms:
                bad.append(f"{r['phase']}: legit p99 {r['p99_ms']:.0f} ms "
                           f"> {args.max_p99_ms:g} ms")
        if r["proxy"] == "defended" and r["phase"] == "flood":
            if r["answered_pct"] < args.flood_min_answered:
                bad.append(f"flood: legit answered {r['answered_pct']:.2f} % "
                           f"< {args.flood_min_answered:g} %")
            if args.flood_max_p99_ms and r["p99_ms"] > args.flood_max_p99_ms:
                bad.append(f"flood: legit p99 {r['p99_ms']:.0f} ms "
                           f"> {args.flood_max_p99_ms:g} ms")
    for b in bad:
        print(f"FAIL {b}", flush=True)
    if not bad:
        print("OK legitimate traffic held up during slowloris and halfclose", flush=True)
    for r in rows:
        if r["phase"] == "flood":
            print(f"NOTE flood/{r['proxy']}: {r['answered_pct']:.2f} % of legit requests "
                  f"answered (200 or 503) within {args.legit_timeout:g} s, "
                  f"p99 {r['p99_ms']:.0f} ms", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
