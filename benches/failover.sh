#!/usr/bin/env bash
# Leader kill -> first acknowledged write, over KILLS kills of three real processes under
# load (issue 38's goal: p99 <= 1.5 s, the ISO 8583 deadline).
#
#   benches/failover.sh [KILLS]    (default 20; PROTOCOL=unary|stream, CALLERS=32,
#                                   BIN=path/to/tandem to measure another build)
#
# Three nodes come up with scripts/cluster.sh (in target/failover). Each round runs
# tandem-loadtest against all three nodes (closed loop, lifecycle traffic, every answer
# audited), kills the leader with SIGKILL 3 s in (--kill-leader-after), and reads from the
# report the time from the kill to the first approval of a request sent after it; then the
# killed node is started again and the next round waits until all three agree on a leader.
# Prints each round and the p50/p99/max, and fails if any round's audit fails.
set -uo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
export CLUSTER_DIR=${CLUSTER_DIR:-target/failover} PORT_BASE=7100
bin=${BIN:-target/release/tandem}
lt=target/release/tandem-loadtest
export TANDEM_BIN=$bin
[ -x "$lt" ] && [ -x "$bin" ] || cargo build --release -p tandem-server -p tandem-loadtest
scripts/cluster.sh down >/dev/null 2>&1 || true
rm -rf "$CLUSTER_DIR"
scripts/cluster.sh up >/dev/null
token=$(cat "$CLUSTER_DIR/admin.token")
targets=grpc://127.0.0.1:7101,grpc://127.0.0.1:7102,grpc://127.0.0.1:7103
stream=""
[ "${PROTOCOL:-stream}" = stream ] && stream=--stream
results=()
for round in $(seq 1 "$kills"); do
    report="$CLUSTER_DIR/report-$round"
    if ! "$lt" run --target "$targets" --token "$token" --accounts 500 --scenario lifecycle \
        $stream --closed-loop --concurrency "${CALLERS:-32}" --duration 7s --settle \
        --kill-leader-after 3s --kill-command "scripts/cluster.sh kill-leader" \
        --report "$report" --quiet >/dev/null 2>"$report.err"; then
        echo "round $round: the run failed (audit or error): see $report" >&2
        cat "$report.err" >&2
        exit 1
    fi
    line=$(python3 - "$report/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["cluster"]; k = c["kills"][0]
print(k["first_approval_ms"] if k["first_approval_ms"] is not None else "none",
      k.get("first_answer_ms"),
      k["killed"].split()[1], round(r["approvals_per_second"]), c["retried"], c["in_doubt"],
      len(r["errors"]))
EOF
)
    read -r ms any killed aps retried doubt errors <<<"$line"
    echo "round $round: node $killed killed; first approval after ${ms} ms (of any request ${any} ms); ${aps} approvals/s; $retried retried, $doubt in doubt, $errors error kinds"
    results+=("$ms")
    scripts/cluster.sh start "$killed" >/dev/null
    for _ in $(seq 1 100); do
        "$bin" cluster status --target 127.0.0.1:7111 --token "$token" 2>/dev/null |
            grep -q '"leader_id": *[0-9]' && break
        sleep 0.1
    done
done
scripts/cluster.sh down >/dev/null
printf '%s\n' "${results[@]}" | python3 -c '
import sys
xs = sorted(float(x) for x in sys.stdin.read().split() if x != "none")
n = len(xs)
if n == 0:
    sys.exit("no kill was followed by an approval")
p = lambda q: xs[min(n - 1, int(q * n + 0.999999) - 1)]
print(f"{n} kills: first approval after the kill p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, max {xs[-1]:.0f} ms")
'
