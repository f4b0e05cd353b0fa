#!/usr/bin/env bash
# The test suite, with everything it needs installed first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh" test
cd "$root"
exec .venv/bin/python -m pytest -q "$@"
