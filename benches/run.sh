#!/usr/bin/env bash
# Refreshes the server figures in docs/BENCHMARKS.md: starts a release `tandem serve` on a
# fresh data directory and runs tandem-loadtest against it for each protocol and scenario,
# first closed loop (maximum throughput), then open loop at half of it (latency): half of the
# units of work per second, so lifecycles' follow-ups do not double the "half" load.
# Usage: benches/run.sh [SECONDS]   (default 20 s per run; SCENARIOS="mixed" or
# PROTOCOLS="iso8583" to run only some).
# Reports go to target/bench-reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
cargo build --release -p tandem-server -p tandem-loadtest
out=target/bench-reports
data=$(mktemp -d)
rm -rf "$out" && mkdir -p "$out"
token=bench-admin
TANDEM_ADMIN_TOKEN=$token TANDEM_LOG=warn target/release/tandem serve --data-dir "$data" \
  --grpc-listen 127.0.0.1:50151 --http-listen 127.0.0.1:8180 --iso8583-listen 127.0.0.1:8683 \
  > "$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
sleep 2

run() { # name target extra-args...
  local name=$1 target=$2; shift 2
  target/release/tandem-loadtest run --target "$target" --token $token --quiet --no-audit \
    --duration "${seconds}s" --report "$out/$name" "$@" > /dev/null
  local json=$out/$name/report.json approvals answers
  approvals=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["approvals_per_second"]))' "$json")
  answers=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["total"]["per_second"]))' "$json")
  echo "$name ${approvals} approvals/s (${answers} answers/s) load $(cut -d' ' -f1 /proc/loadavg)"
}

for scenario in ${SCENARIOS:-authorize mixed}; do
  for protocol in ${PROTOCOLS:-unary stream http iso8583}; do
    case $protocol in
      unary) target=grpc://127.0.0.1:50151; extra=(--concurrency 256) ;;
      stream) target=grpc://127.0.0.1:50151; extra=(--stream --connections 2 --concurrency 2048) ;;
      http) target=http://127.0.0.1:8180; extra=(--concurrency 256) ;;
      iso8583) target=iso8583://127.0.0.1:8683
        extra=(--admin-target http://127.0.0.1:8180 --connections 16 --concurrency 2048) ;;
    esac
    line=$(run "$scenario-$protocol-max" "$target" --scenario "$scenario" --accounts 10000 --closed-loop "${extra[@]}")
    echo "$line"
    # Half of the maximum in scheduled units of work (one authorization, with its follow-up in
    # lifecycles, or one balance read), not in answered requests.
    half=$(python3 -c 'import json,sys; o=json.load(open(sys.argv[1]))["operations"]; print(int(sum(o.get(k,{}).get("per_second",0) for k in ("authorize","get_balance"))/2))' "$out/$scenario-$protocol-max/report.json")
    extra_open=()
    [ "$protocol" = stream ] && extra_open=(--stream --connections 2)
    [ "$protocol" = iso8583 ] && extra_open=(--admin-target http://127.0.0.1:8180 --connections 16)
    run "$scenario-$protocol-half" "$target" --scenario "$scenario" --accounts 10000 --rate "$half" "${extra_open[@]}"
  done
done
echo "reports in $out/*/report.md"
