#!/usr/bin/env bash
# ft serve under load: starts a server on loopback over a fresh tiny model, runs one short
# job to the end, then bench_serve_load's clients against it (and prints their JSON line).
#   bash bench/serve_load.sh [CLIENTS] [REQUESTS]      (after ./setup.sh; FT, BENCH override)
set -euo pipefail
cd "$(dirname "$0")/.."
FT=${FT:-build/ft}
BENCH=${BENCH:-build/bench/bench_serve_load}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$FT" init --arch llama --size tiny --out "$work/model" >/dev/null
mkdir "$work/data"
head -64 examples/data/addition/train.jsonl >"$work/data/train.jsonl"
echo "bench-token-0123456789abcdef" >"$work/token"
FT_DEVICE=cpu "$FT" serve --port 0 --token-file "$work/token" --root "$work" \
  --jobs-dir "$work/jobs" >"$work/serve.log" 2>&1 &
for _ in $(seq 100); do grep -q "listening" "$work/serve.log" && break; sleep 0.1; done
port=$(grep -o "127.0.0.1:[0-9]*" "$work/serve.log" | head -1 | cut -d: -f2)
auth="Authorization: Bearer $(cat "$work/token")"
id=$(curl -s -H "$auth" -d '{"model": "model", "data": "data", "iterations": 8, "batch-size": 2}' \
  "http://127.0.0.1:$port/api/v1/jobs" | python3 -c "import json, sys; print(json.load(sys.stdin)['id'])")
until curl -s -H "$auth" "http://127.0.0.1:$port/api/v1/jobs/$id" | grep -q '"status":"succeeded"'; do
  sleep 0.2
done
"$BENCH" 127.0.0.1 "$port" "$(cat "$work/token")" "$id" "${1:-100}" "${2:-50}"
