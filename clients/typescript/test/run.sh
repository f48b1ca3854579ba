#!/usr/bin/env bash
# Builds the client and runs its tests against a real `ft serve`:
#   clients/typescript/test/run.sh [FT_BINARY]      (ctest: serve_typescript_client)
# Exits 77 (skipped) when node or tsc is missing; ./setup.sh test installs both.
set -euo pipefail
ft=$(realpath "${1:-build/ft}")
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v tsc >/dev/null; then
  echo "skipped: node or tsc is not installed"
  exit 77
fi
tsc -p .
FT_BINARY=$ft node --test test/
