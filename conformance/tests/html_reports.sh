#!/usr/bin/env bash
# The HTML report and the matrix, as a reader sees them: rendered by headless Chromium
# (Debian's chromium) from real runs (the reference proxy, and one started with a flag
# that breaks CACHE-1) and from a report whose target sent markup. Checks that each page
# renders its table with a row per requirement, that the failure's evidence is there,
# folded, that the target's markup stays text, and that the console stays silent; saves
# a screenshot of each page beside the build and names it in the log.
#   html_reports.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
suite=$build/conformance/qwen-conformance
out=$build/conformance/html-check
rm -rf "$out" && mkdir -p "$out"
fail() {
    echo "html_reports: $*" >&2
    exit 1
}
browser=$(command -v chromium || command -v chromium-browser || true)
[[ -n $browser ]] || fail "no chromium on PATH (ci/install-deps.sh installs Debian's)"

only=AUTH-1,CACHE-1,CACHE-2,ERR-1
"$suite" --spawn --only "$only" --json "$out/reference.json" --html "$out/reference.html" \
    >"$out/reference.log" 2>&1 || { cat "$out/reference.log"; fail "the reference run failed"; }
# The ordinary proxy with a cache that holds nothing: CACHE-1 fails (the no_cache mutant).
set +e
"$suite" --spawn --only "$only" --proxy-arg --cache-max-bytes --proxy-arg 1 \
    --json "$out/no-cache.json" --html "$out/no-cache.html" >"$out/no-cache.log" 2>&1
code=$?
set -e
[[ $code == 1 ]] || { cat "$out/no-cache.log"; fail "the no-cache run: exit $code, expected 1"; }
# A report as a hostile target could make one: markup in a reason, a test name, evidence.
python3 - "$out/no-cache.json" "$out/hostile.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["profile"] = "hostile <b>profile</b>"
req = r["requirements"][0]
req["reason"] = "<script>console.error('injected')</script><img src=x onerror=alert(1)>"
req["result"] = "FAIL"
req["tests"][0].update(result="FAIL", name="<i>t</i>",
                       evidence="body: </pre><script>console.error('evidence')</script>")
json.dump(r, open(sys.argv[2], "w"))
PY
"$suite" --from-json "$out/hostile.json" --html "$out/hostile.html"
"$suite" --matrix "$out/matrix.html" "$out/reference.json" "$out/no-cache.json" "$out/hostile.json"

# render PAGE: the DOM Chromium built, in PAGE.dom; its console lines, in PAGE.console; a
# screenshot in PAGE.png.
render() {
    local page=$1 flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage
        --no-first-run --hide-scrollbars --enable-logging=stderr --v=0
        --user-data-dir="$out/profile")
    timeout 60 "$browser" "${flags[@]}" --dump-dom "file://$page" >"$page.dom" 2>"$page.stderr" ||
        { tail -n 20 "$page.stderr"; fail "chromium could not render $page"; }
    timeout 60 "$browser" "${flags[@]}" --window-size=1280,1600 --screenshot="$page.png" \
        "file://$page" >/dev/null 2>>"$page.stderr" ||
        { tail -n 20 "$page.stderr"; fail "chromium could not take a screenshot of $page"; }
    grep -a 'CONSOLE' "$page.stderr" >"$page.console" || true
    [[ ! -s $page.console ]] || { cat "$page.console"; fail "$page: console messages"; }
    [[ $(head -c 8 "$page.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
        fail "$page.png is not a PNG"
    echo "html_reports: $page rendered; screenshot $page.png ($(stat -c %s "$page.png") bytes)"
}
rows() { grep -o "$1" "$2" | wc -l; }
# The number of requirements a JSON report judged.
judged() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["requirements"]))' "$1"; }

for name in reference no-cache hostile; do
    render "$out/$name.html"
    dom=$out/$name.html.dom
    n=$(judged "$out/$name.json")
    [[ $(rows '<tr id="' "$dom") == "$n" ]] || fail "$name: $(rows '<tr id="' "$dom") rows, $n requirements"
    ! grep -q '<script' "$dom" || fail "$name: a <script> element in the rendered page"
done
grep -q 'class="verdict PASS">conforms' "$out/reference.html.dom" || fail "reference: no 'conforms'"
grep -q '<tr id="CACHE-1">.*class="r FAIL">FAIL' "$out/no-cache.html.dom" ||
    fail "no-cache: CACHE-1 is not shown failing"
grep -q '<details open=""><summary><span class="r FAIL">' "$out/no-cache.html.dom" ||
    fail "no-cache: the failing test's evidence is not unfolded"
grep -qF '&lt;script&gt;console.error' "$out/hostile.html.dom" ||
    fail "hostile: the target's markup is not shown as text"
! grep -q '<img' "$out/hostile.html.dom" || fail "hostile: the target's <img> became an element"

render "$out/matrix.html"
dom=$out/matrix.html.dom
[[ $(rows '<th>hostile &lt;b&gt;profile&lt;/b&gt;' "$dom") == 1 ]] || fail "matrix: no hostile column"
for id in AUTH-1 CACHE-1 CACHE-2 ERR-1; do
    [[ $(rows "<tr><th title=\"[^\"]*\"><code>$id</code>" "$dom") == 1 ]] || fail "matrix: no row $id"
done
grep -q '<code>CACHE-1</code>.*class="r PASS"[^>]*>PASS</td><td class="r FAIL"' "$dom" ||
    fail "matrix: CACHE-1 is not PASS for the reference and FAIL without a cache"
echo "html_reports: ok"
