#!/usr/bin/env bash
# The test suite, with everything it needs installed first. The default run leaves out the tests marked
# `slow` (it stays within about 8 minutes on 2 cores); RESNET_TEST_ALL=1 runs every test (CI does).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" test
cd "$root"
if [[ "${RESNET_TEST_ALL:-0}" == 1 ]]; then
    exec .venv/bin/python -m pytest -q "$@"
fi
exec .venv/bin/python -m pytest -q -m "not slow" "$@"
