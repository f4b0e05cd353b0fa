#!/usr/bin/env bash
# The main job: train resnet20 on the real Fashion-MNIST and print its test accuracy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/resnet train "$@"
