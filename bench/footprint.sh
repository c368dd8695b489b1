#!/usr/bin/env bash
# Footprint of serverpulse-agent next to Debian's prometheus-node-exporter, measured in
# one run on this machine: proportional set size (PSS) at steady state, CPU time per
# collection (agent) and per scrape (node_exporter), and bytes per report.
#
#   bench/footprint.sh [COLLECTIONS]     (default 60; one collection/scrape per second)
#
# Everything talks to 127.0.0.1 only. Installs prometheus-node-exporter with apt if absent;
# needs dbus-daemon and python3-dbus/python3-gi (as the tests do).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-60}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

if ! command -v prometheus-node-exporter >/dev/null; then
  apt-get update -qq && apt-get install -y -qq prometheus-node-exporter >/dev/null
fi
cargo build --release -q -p serverpulse-hub
cargo build --profile agent -q -p serverpulse-agent
HUB=target/release/serverpulse
AGENT=target/agent/serverpulse-agent
sync   # freshly written binaries have dirty page-cache pages that would count as private
TICKS=$(getconf CLK_TCK)

# CPU of a process and of the children it runs, in nanoseconds: what it costs the host.
# Live threads (its own and its children's) from schedstat, which counts exact run time
# rather than 10 ms ticks; children already reaped from their ticks.
cpu_ns() {
  local total=0 pid task
  for pid in "$1" $(pgrep -P "$1" || true); do
    for task in /proc/"$pid"/task/*/schedstat; do
      total=$((total + $(awk '{print $1}' "$task" 2>/dev/null || echo 0)))
    done
  done
  echo $((total + $(awk '{print $16 + $17}' "/proc/$1/stat") * 1000000000 / TICKS))
}
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The hub, asking agents to collect every second.
HUB_PORT=$(free_port)
$HUB --data-dir "$WORK/hub" server add --name bench --ip 127.0.0.1 --json > "$WORK/server.json"
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["enrollment_token"])' "$WORK/server.json")
SERVERPULSE_LOG=warn $HUB --data-dir "$WORK/hub" serve --listen "127.0.0.1:$HUB_PORT" --collection-interval 1 2>"$WORK/hub.log" &
PIDS+=($!)
# As on a systemd host, the agent watches five units over D-Bus every collection. This
# machine runs no systemd: the bus is a private dbus-daemon with the test suite's
# stand-in systemd on it (their CPU is not the agent's and is not counted).
dbus-daemon --session --nofork --print-address --address="unix:path=$WORK/bus" >"$WORK/bus.addr" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$WORK/bus.addr" ] && break; sleep 0.1; done
/usr/bin/python3 crates/serverpulse-agent/tests/helpers/fake_systemd.py "unix:path=$WORK/bus" >"$WORK/systemd.out" &
PIDS+=($!)
for _ in $(seq 50); do grep -q ready "$WORK/systemd.out" 2>/dev/null && break; sleep 0.1; done
cat > "$WORK/agent.yml" <<YAML
server:
  endpoint: http://127.0.0.1:$HUB_PORT
  enrollment_token: "$TOKEN"
storage:
  state_dir: $WORK/agent
logging:
  level: WARN
monitoring:
  services: [nginx, mysql, backup.timer, ssh, cron]
YAML
sleep 1
DBUS_SYSTEM_BUS_ADDRESS="unix:path=$WORK/bus" $AGENT --config "$WORK/agent.yml" run 2>"$WORK/agent.log" &
AGENT_PID=$!
PIDS+=($AGENT_PID)

NE_PORT=$(free_port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$NE_PORT" 2>"$WORK/ne.log" &
NE_PID=$!
PIDS+=($NE_PID)
sleep 3
curl -fsS "http://127.0.0.1:$NE_PORT/metrics" -o "$WORK/scrape.txt"   # warm-up scrape

# Reports the hub has stored so far.
seq_now() { python3 - "$WORK/hub/serverpulse.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True).execute("SELECT COUNT(*) FROM performance_logs").fetchone()[0])
PY
}

A0=$(cpu_ns $AGENT_PID); S0=$(seq_now)
E0=$(cpu_ns $NE_PID)
for _ in $(seq "$N"); do
  curl -fsS "http://127.0.0.1:$NE_PORT/metrics" -o /dev/null
  sleep 1
done
A1=$(cpu_ns $AGENT_PID); S1=$(seq_now)
E1=$(cpu_ns $NE_PID)
AGENT_PSS=$(pss_kib $AGENT_PID); NE_PSS=$(pss_kib $NE_PID)
COLLECTIONS=$((S1 - S0))

# One report as the hub stored it, compact and gzipped.
$AGENT --config "$WORK/agent.yml" collect --json | python3 -c 'import json,sys; sys.stdout.write(json.dumps(json.load(sys.stdin), separators=(",",":")))' > "$WORK/report.json"
RAW=$(wc -c < "$WORK/report.json"); GZ=$(gzip -c "$WORK/report.json" | wc -c)
SCRAPE_RAW=$(wc -c < "$WORK/scrape.txt"); SCRAPE_GZ=$(gzip -c "$WORK/scrape.txt" | wc -c)

python3 - "$AGENT_PSS" "$NE_PSS" "$A0" "$A1" "$COLLECTIONS" "$E0" "$E1" "$N" "$TICKS" "$RAW" "$GZ" "$SCRAPE_RAW" "$SCRAPE_GZ" <<'PY'
import sys
a_pss, ne_pss, a0, a1, coll, e0, e1, n, hz, raw, gz, sraw, sgz = map(int, sys.argv[1:])
a_ms = (a1 - a0) / 1e6 / max(coll, 1)
e_ms = (e1 - e0) / 1e6 / max(n, 1)
print(f"| measure | serverpulse-agent | node_exporter | ratio |")
print(f"|---|---|---|---|")
print(f"| PSS at steady state | {a_pss/1024:.1f} MiB | {ne_pss/1024:.1f} MiB | {a_pss/ne_pss:.2f} |")
print(f"| CPU per collection / scrape | {a_ms:.2f} ms ({coll} collections) | {e_ms:.2f} ms ({n} scrapes) | {a_ms/e_ms if e_ms else float('nan'):.2f} |")
print(f"| CPU per hour at 30 s | {a_ms*120/1000:.2f} s | {e_ms*120/1000:.2f} s | |")
print(f"| bytes per report / scrape | {raw} B raw, {gz} B gzip | {sraw} B raw, {sgz} B gzip | |")
PY
