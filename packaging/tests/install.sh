#!/usr/bin/env bash
# cmake --install as a packager runs it, and the installed kit as a user runs it:
#  - the layout: programs, man pages, profiles, docs, the example settings, the unit;
#  - the installed qwen-conformance --spawn finds the installed qwen-proxy (none of the
#    build tree) and the built-in reference profile; qwen-check-proxy finds the installed
#    programs on PATH; the installed proxy reads the example settings file;
#  - the systemd unit passes systemd-analyze verify;
#  - packaging/Dockerfile, without Docker (it cannot run here): its configure, build and
#    install commands, run as written into a scratch directory, and its runtime packages
#    against the libraries the installed programs link.
#   install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
    echo "install: $*" >&2
    exit 1
}
prefix=$work/usr
cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in bin/qwen-proxy bin/qwen-mock bin/qwen-conformance bin/qwen-check-proxy; do
    [[ -x $prefix/$f ]] || fail "no program $f"
done
for f in share/man/man1/qwen-proxy.1 share/man/man1/qwen-mock.1 share/man/man1/qwen-conformance.1 \
    share/man/man1/qwen-check-proxy.1 share/qwen-proxy-kit/profiles/reference.json \
    share/qwen-proxy-kit/profiles/reference-v2.json share/qwen-proxy-kit/profiles/template.json \
    share/qwen-proxy-kit/ci-examples/github-actions.yml share/qwen-proxy-kit/examples/qwen-proxy.conf \
    share/doc/qwen-proxy-kit/README.md share/doc/qwen-proxy-kit/SPEC.md \
    lib/systemd/system/qwen-proxy.service; do
    [[ -s $prefix/$f ]] || fail "nothing installed at $f"
done
# Each man page is a page of its program, with its options.
grep -q '^\.TH QWEN-PROXY "1"' "$prefix/share/man/man1/qwen-proxy.1" || fail "qwen-proxy.1 has no .TH"
grep -q 'cache\\-ttl' "$prefix/share/man/man1/qwen-proxy.1" || fail "qwen-proxy.1 lacks --cache-ttl"
grep -q '^\.TH QWEN-CHECK-PROXY' "$prefix/share/man/man1/qwen-check-proxy.1" || fail "qwen-check-proxy.1"

# The installed suite, from elsewhere, with only the installed programs on PATH.
(cd "$work" && env PATH="$prefix/bin:/usr/bin:/bin" qwen-conformance --spawn --only AUTH-1,HTTP-2) \
    >"$work/spawn.log" 2>&1 || { cat "$work/spawn.log"; fail "the installed --spawn failed"; }
grep -qx "spawned: $prefix/bin/qwen-proxy" "$work/spawn.log" ||
    fail "the installed qwen-conformance did not spawn the installed proxy: $(grep spawned "$work/spawn.log")"
(cd "$work" && env PATH="$prefix/bin:/usr/bin:/bin" qwen-check-proxy --reports "$work/reports" \
    --profile "$prefix/share/qwen-proxy-kit/profiles/reference.json" --only AUTH-1,ERR-5 -- \
    qwen-proxy --port '{port}' --upstream '{upstream}' --upstream-dialect v1 --upstream-timeout 1) \
    >"$work/check.log" 2>&1 || { cat "$work/check.log"; fail "the installed qwen-check-proxy failed"; }
[[ -s $work/reports/report.html ]] || fail "qwen-check-proxy wrote no report.html"
"$prefix/bin/qwen-proxy" --config "$prefix/share/qwen-proxy-kit/examples/qwen-proxy.conf" --port 0 \
    >"$work/proxy.out" 2>"$work/proxy.err" &
pid=$!
for _ in $(seq 50); do grep -q '^listening on' "$work/proxy.out" && break; sleep 0.1; done
kill "$pid" 2>/dev/null || true
wait "$pid" || true
grep -q '^listening on http://127.0.0.1:' "$work/proxy.out" ||
    { cat "$work/proxy.err"; fail "the proxy did not start from the example settings"; }

unit=$prefix/lib/systemd/system/qwen-proxy.service
grep -qx "ExecStart=$prefix/bin/qwen-proxy --config /etc/qwen-proxy.conf" "$unit" ||
    fail "the unit's ExecStart is not the installed proxy: $(grep ExecStart "$unit")"
command -v systemd-analyze >/dev/null || fail "no systemd-analyze (Debian's systemd package)"
systemd-analyze verify --man=no "$unit" || fail "systemd-analyze verify rejects the unit"

# The Dockerfile's steps. Its RUN lines are joined; the build stage's cmake commands run
# with /src, /build and /staging mapped into the scratch directory.
dockerfile=$src/packaging/Dockerfile
runs=$(python3 - "$dockerfile" <<'PY'
import re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
stages = re.split(r"^FROM ", text, flags=re.M)[1:]
for n, stage in enumerate(stages):
    for line in stage.splitlines():
        if line.startswith("RUN "):
            print(f"{n}\t{' '.join(line[4:].split())}")
PY
)
build_cmds=$(awk -F'\t' '$1 == 0 && /cmake/ {print $2}' <<<"$runs")
[[ -n $build_cmds ]] || fail "the Dockerfile's build stage runs no cmake"
build_cmds=${build_cmds//\/src/$src}
build_cmds=${build_cmds//\/build/$work/docker-build}
build_cmds=${build_cmds//\/staging/$work/staging}
(bash -euo pipefail -c "$build_cmds") >"$work/docker-steps.log" 2>&1 ||
    { tail -n 30 "$work/docker-steps.log"; fail "the Dockerfile's build steps failed"; }
[[ -x $work/staging/usr/bin/qwen-proxy && -s $work/staging/usr/share/man/man1/qwen-proxy.1 ]] ||
    fail "the Dockerfile's install left no /usr/bin/qwen-proxy or man page in /staging"
[[ ! -e $work/staging/usr/lib/systemd ]] || fail "the image would get a systemd unit"
# Each library a program needs comes from a package the runtime stage installs (or libc6,
# which debian:12-slim has).
runtime=$(awk -F'\t' '$1 == 1 && /apt-get install/ {print $2}' <<<"$runs" |
    grep -oE 'install -y( --no-install-recommends)?[^&]*' | cut -d' ' -f3- | tr ' ' '\n' |
    grep -vE '^(-|$)')
for program in qwen-proxy qwen-mock qwen-conformance; do
    for lib in $(readelf -d "$work/staging/usr/bin/$program" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p'); do
        # (No pipe ends in a reader that stops early: under pipefail the writer's SIGPIPE
        # would fail it.)
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found {print $NF; found = 1}')
        [[ -n $path ]] || fail "$program needs $lib, which this system does not have"
        package=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | awk -F: 'NR == 1 {print $1}') ||
            package=
        [[ -n $package ]] || package=$(dpkg -S "$path" | awk -F: 'NR == 1 {print $1}')
        [[ $package == libc6 ]] || grep -qx "$package" <<<"$runtime" ||
            fail "$program needs $lib from $package, which the Dockerfile's runtime stage does not install"
    done
done
echo "install: ok (layout, installed suite and checker, unit verified, Dockerfile steps)"
