#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the conformance suite
# against the reference proxy, with the mock as its upstream (both on free
# loopback ports), in each upstream dialect: v2 (today's chat.qwen.ai) and v1.
# Exit status: 0 when every MUST requirement passes in both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh
bash ci/build.sh build
build/conformance/qwen-conformance --spawn --profile conformance/profiles/reference-v2.json "$@"
exec build/conformance/qwen-conformance --spawn "$@"
