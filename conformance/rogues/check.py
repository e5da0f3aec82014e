#!/usr/bin/env python3
"""check.py: compares a qwen-conformance JSON report of one rogue with expected.tsv.

    python3 conformance/rogues/check.py ROGUE REPORT.json

Prints one line per requirement (and SHOULD part) the report judged: actual, expected,
and what a mismatch is; then a count. Exit status 1 when a verdict is WRONG, else 0.
expected.tsv (README.md, "Expected verdicts"): FAIL must fail; SKIP must not fail (a PASS
is noted as a pass without evidence); GONE (judged after the rogue died) must not pass;
anything not listed must not fail. A SHOULD part ("ID/should") not listed follows its
requirement; under an expected FAIL it is not judged (as with --expect-fail).
"""
import csv, json, os, sys

def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rogue, report = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    expected = {}
    with open(os.path.join(here, "expected.tsv")) as f:
        rows = csv.reader((l for l in f if l.strip() and not l.startswith("#")), delimiter="\t")
        for row in rows:
            if row[0] == rogue:
                expected[row[1]] = row[2]
    d = json.load(open(report))
    wrong = noted = 0
    for r in d["requirements"]:
        sp = r.get("should_part") or {}
        for key, actual, level, reason in ((r["id"], r["result"], r["level"], r.get("reason", "")),
                                           (r["id"] + "/should", sp.get("result"), "SHOULD part", sp.get("reason", ""))):
            if actual in (None, "NOT RUN"):
                continue
            want = expected.get(key)
            if want is None and key.endswith("/should"):
                want = expected.get(r["id"])
                if want == "FAIL":
                    continue  # the SHOULD part of a requirement expected to fail is not judged
            want = want or "PASS|SKIP"
            note = ""
            if want == "FAIL":
                ok = actual == "FAIL"
                note = {"PASS": "WRONG: FALSE PASS", "SKIP": "WRONG: SKIPPED although the rogue breaks it"}.get(actual, "")
            elif want == "GONE":
                ok = actual != "PASS"
                note = "" if ok else "WRONG: PASS without evidence (the rogue was dead)"
            else:
                ok = actual != "FAIL"
                note = "" if ok else "WRONG: FALSE FAILURE (the rogue does not break it)"
                if ok and want == "SKIP" and actual == "PASS":
                    note = "noted: PASS without evidence (a precondition does not hold)"
                    noted += 1
            wrong += not ok
            print("%-12s %-11s %-5s expected %-9s %s" % (key, level, actual, want, note or "ok"))
            if not ok and reason:
                print(" " * 13 + reason)
    print("%s: %d wrong verdict(s), %d pass(es) without evidence" % (rogue, wrong, noted))
    sys.exit(1 if wrong else 0)

if __name__ == "__main__":
    main()
