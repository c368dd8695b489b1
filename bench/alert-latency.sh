#!/usr/bin/env bash
# Ingest -> notification latency: a release hub on 127.0.0.1 with its own data
# directory, an agent identity made with the CLI, and bench/alert_latency.py posting
# reports that fire and resolve a rule while timing each firing to its webhook.
#
#   bench/alert-latency.sh [FIRINGS]     (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-50}"
WORK="$(mktemp -d)"
HUB_PID=""
cleanup() { [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release -q -p serverpulse-hub
HUB="target/release/serverpulse --data-dir $WORK/data"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "bench-password-123" | $HUB user add --email bench@example.test --role admin --password-stdin >/dev/null
ADMIN=$($HUB token create --email bench@example.test --name bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
SERVER=$($HUB server add --name bench --ip 127.0.0.1 --with-credentials --json)
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$1)" "$SERVER"; }
SERVERPULSE_LOG=warn $HUB serve --listen "127.0.0.1:$PORT" 2>"$WORK/hub.log" &
HUB_PID=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/api/v1/health" >/dev/null 2>&1 && break; sleep 0.1; done
echo "| measure | median | p95 | worst | runs |"
echo "|---|---|---|---|---|"
python3 bench/alert_latency.py "http://127.0.0.1:$PORT" "$ADMIN" "$(field '["server"]["id"]')" \
  "$(field '["agent_id"]')" "$(field '["auth_token"]')" "$N"
