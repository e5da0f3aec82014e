#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the conformance suite
# against the reference proxy, with the mock as its upstream (both on free
# loopback ports). Exit status: 0 when every MUST requirement passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh
bash ci/build.sh build
exec build/conformance/qwen-conformance --spawn "$@"
