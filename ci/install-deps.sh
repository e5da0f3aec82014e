#!/usr/bin/env bash
# Installs the build and test dependencies from Debian's packages when missing.
# Idempotent: does nothing (and needs no network) when everything is present.
set -euo pipefail

packages=(build-essential cmake pkg-config curl
          libmicrohttpd-dev libcurl4-openssl-dev libcjson-dev libcmocka-dev)
# ci/fuzz.sh: clang, libFuzzer and the sanitizer runtimes (not a dependency of clang-14 on
# bookworm), and llvm-symbolizer for file:line in the reports.
packages+=(clang libclang-rt-14-dev llvm)
# ci/check-format.sh: the formatter .clang-format is written for (Debian 12's, 14).
packages+=(clang-format)
# bench/instructions.sh, the instruction-count gate of the release ctest (label bench-gate):
# callgrind and callgrind_annotate.
packages+=(valgrind)
# The HTML reports' check (ctest label browser): Debian's Chromium, run headless.
packages+=(chromium)
# Packaging (ctest packaging_install): man pages from --help, and systemd-analyze to verify
# the unit.
packages+=(help2man systemd)
# GET /metrics (ctest e2e_proxy_prometheus): promtool checks the text, a Prometheus server
# scrapes it.
packages+=(prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the openai-node check and the Node rogues, Python 3 the Python rogues;
# machines that ship their own keep them.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if ! command -v python3 >/dev/null; then
  missing+=(python3)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "ci/install-deps.sh: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
