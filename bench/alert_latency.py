#!/usr/bin/env python3
"""Ingest -> notification latency of a running hub (driven by bench/alert-latency.sh).

Sends reports through the agent API that fire and resolve a rule with no `for`, and
times each firing report's POST until the webhook it causes reaches a receiver on
127.0.0.1. Prints the median, p95 and worst over N episodes.

usage: alert_latency.py HUB_URL ADMIN_TOKEN SERVER_ID AGENT_ID AGENT_TOKEN N
"""

import datetime
import http.server
import json
import statistics
import sys
import threading
import time
import urllib.request

hub, admin, server_id, agent_id, agent_token, rounds = sys.argv[1:7]
server_id, rounds = int(server_id), int(rounds)
arrivals = []
arrived = threading.Condition()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        with arrived:
            arrivals.append((time.monotonic(), json.loads(body)["event"]))
            arrived.notify_all()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()


def call(path, body, token):
    request = urllib.request.Request(hub + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read() or b"{}")


call("/api/v1/channels", {"name": "bench hook", "kind": "webhook",
                          "settings": {"url": f"http://127.0.0.1:{receiver.server_port}/hook"},
                          "route": {"min_severity": "info"}}, admin)
call("/api/v1/rules", {"name": "bench cpu", "metric": "cpu", "op": ">", "critical": 80,
                       "scope": {"servers": [server_id]}}, admin)


def report(cpu):
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    call(f"/api/v1/agents/{agent_id}/metrics",
         {"timestamp": now, "metrics": {"cpu_usage": cpu, "memory_usage": 10, "disk_usage": 10}}, agent_token)


def wait_for(count):
    with arrived:
        if not arrived.wait_for(lambda: len(arrivals) >= count, timeout=10):
            sys.exit(f"notification {count} did not arrive within 10 s")
        return arrivals[count - 1][0]


latencies = []
for i in range(rounds):
    sent = time.monotonic()
    report(95)
    latencies.append((wait_for(2 * i + 1) - sent) * 1000)
    report(10)
    wait_for(2 * i + 2)

latencies.sort()
p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
print(f"| ingest → webhook received | {statistics.median(latencies):.1f} ms | {p95:.1f} ms | {latencies[-1]:.1f} ms "
      f"| {rounds} firings |")
