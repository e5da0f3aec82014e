#!/usr/bin/env python3
"""selftest.py: the suite's verdicts on one rogue must be exactly the expected ones.

    python3 conformance/rogues/selftest.py ROGUE [--modes full,shuffled,alone|alone-listed]
                                           [--seed N]
    python3 conformance/rogues/selftest.py ROGUE --report REPORT.json   (check one report)

Runs the suite against ROGUE through run.sh (QK_BUILD_DIR as there): once in registration
order, once shuffled (--seed, default 20261201) and once per requirement alone (--only ID),
each with --json, and compares every requirement's verdict (and SHOULD part) with
expected.tsv. Mode alone-listed runs alone only the requirements expected.tsv lists for
ROGUE: that each defect is found with no test before it; the controls, which list (almost)
nothing, run every requirement alone and show that a correct proxy passes each one alone. A verdict must be the same in every mode: that is what makes it the
requirement's, not the order's. Prints one line per difference and a summary; exits 1 on
any difference, 2 on a setup error.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
STATES = {"PASS", "FAIL", "SKIP", "UNCHECKED", "CANNOT-JUDGE"}


def expected_for(rogue):
    """{key: verdict} for ROGUE; key is "ID", "ID/should", or "*": the verdict of every
    requirement not listed (PASS when there is no "*" row)."""
    want = {}
    with open(os.path.join(HERE, "expected.tsv"), encoding="utf-8") as f:
        lines = (l for l in f if l.strip() and not l.startswith("#"))
        for row in csv.reader(lines, delimiter="\t"):
            if len(row) < 3:
                continue
            if row[2] not in STATES:
                sys.exit(f"expected.tsv: unknown verdict {row[2]!r} for {row[0]} {row[1]}")
            if row[0] == rogue:
                want[row[1]] = row[2]
    return want


def verdicts(report_path):
    """{key: verdict} of a JSON report, for every requirement it judged."""
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    got = {}
    for r in report["requirements"]:
        got[r["id"]] = (r["result"], r.get("reason", ""))
        part = r.get("should_part")
        if part and part.get("result") not in (None, "NOT RUN"):
            got[r["id"] + "/should"] = (part["result"], part.get("reason", ""))
    return got


def compare(mode, got, want, only=None):
    """Lines describing every difference between @got and @want (restricted to @only)."""
    out = []
    for key, (verdict, reason) in sorted(got.items()):
        base = key.split("/")[0]
        if only and base != only:
            continue
        expected = want.get(key, want.get("*", "PASS"))
        if verdict != expected:
            out.append(f"{mode}: {key} is {verdict}, expected {expected}: {reason[:200]}")
    if only is None:
        for key in sorted(set(want) - set(got) - {"*"}):
            out.append(f"{mode}: {key} was not judged, expected {want[key]}")
    return out


def run_suite(rogue, args, report):
    cmd = ["bash", os.path.join(HERE, "run.sh"), rogue, *args, "--json", report]
    # The suite quotes what the rogue sent, which need not be UTF-8.
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          encoding="utf-8", errors="replace")
    if done.returncode not in (0, 1, 3) or not os.path.exists(report):
        sys.stdout.write(done.stdout[-4000:])
        sys.exit(f"selftest: {' '.join(cmd)} exited {done.returncode} without a report")
    return done


def requirement_ids():
    build = os.environ.get("QK_BUILD_DIR", "build")
    root = os.path.dirname(os.path.dirname(HERE))
    suite = build if os.path.isabs(build) else os.path.join(root, build)
    listing = subprocess.run([os.path.join(suite, "conformance", "qwen-conformance"), "--list"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    return [l.split()[0] for l in listing.splitlines() if l and not l.startswith((" ", "SPEC"))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rogue")
    ap.add_argument("--modes", default="full,shuffled,alone")
    ap.add_argument("--seed", default="20261201")
    ap.add_argument("--report", help="check this report instead of running the suite")
    opts = ap.parse_args()
    want = expected_for(opts.rogue)
    if opts.report:
        diffs = compare("report", verdicts(opts.report), want)
    else:
        diffs = []
        tmp = tempfile.mkdtemp(prefix=f"selftest-{opts.rogue}-")
        modes = opts.modes.split(",")
        if "full" in modes:
            run_suite(opts.rogue, [], os.path.join(tmp, "full.json"))
            diffs += compare("full", verdicts(os.path.join(tmp, "full.json")), want)
        if "shuffled" in modes:
            path = os.path.join(tmp, "shuffled.json")
            run_suite(opts.rogue, ["--shuffle", opts.seed], path)
            diffs += compare(f"shuffled (seed {opts.seed})", verdicts(path), want)
        alone = []
        if "alone" in modes:
            alone = requirement_ids()
        elif "alone-listed" in modes:
            listed = {key.split("/")[0] for key in want if key != "*"}
            alone = [rid for rid in requirement_ids() if rid in listed]
        if alone:
            for rid in alone:
                path = os.path.join(tmp, f"alone-{rid}.json")
                run_suite(opts.rogue, ["--only", rid], path)
                diffs += compare(f"{rid} alone", verdicts(path), want, only=rid)
        print(f"selftest: reports in {tmp}")
    for line in diffs:
        print(line)
    print(f"selftest {opts.rogue}: {len(diffs)} difference(s) from expected.tsv")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
