#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the mock answering a
# streamed completion. (Becomes the full conformance run once the suite lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh
bash ci/build.sh build
exec bash ci/demo-mock.sh build/mockupstream/qwen-mock
