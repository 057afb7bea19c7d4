#!/usr/bin/env bash
# Recovery after kill -9 under load (issue 20 goal 3), on the real binary and a real disk:
#
#   benches/recovery.sh            (ACCOUNTS=100000 RATE=3000 LOAD_SECONDS=60 by default)
#
# Starts a fresh release `tandem serve` at its default checkpoint interval, opens one probe
# account that no traffic touches, provisions ACCOUNTS through tandem-loadtest and drives
# RATE authorizations/s (gRPC, settled lifecycles) for LOAD_SECONDS, then SIGKILLs the server
# mid-load. It starts the server again on the same data directory and reports, from the
# moment the process is started: `/readyz` answering 200, and the probe account's first
# authorization answered (the account is cold: nothing of it is in memory). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
accounts=${ACCOUNTS:-100000}
rate=${RATE:-3000}
load_seconds=${LOAD_SECONDS:-60}
for tool in curl date; do
  command -v "$tool" >/dev/null || { echo "recovery: needs $tool" >&2; exit 2; }
done
cargo build --release -q -p tandem-server -p tandem-loadtest
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
out=${CARGO_TARGET_DIR:-$PWD/target}/recovery/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
# On the build's disk, not a RAM disk: fdatasync must be real.
data=$(mktemp -d -p "${CARGO_TARGET_DIR:-$PWD/target}" recovery-data-XXXX)
token=recovery-admin
grpc=127.0.0.1:50171 http=127.0.0.1:8197 iso=127.0.0.1:8697
server= loadtest=
cleanup() {
  for p in $server $loadtest; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

start() { # log-name
  TANDEM_ADMIN_TOKEN=$token TANDEM_LOG=info "$bin/tandem" serve --data-dir "$data" \
    --grpc-listen $grpc --http-listen $http --iso8583-listen $iso > "$out/$1.log" 2>&1 &
  server=$!
}
now_ms() { date +%s%3N; }
ready() { curl -sf -o /dev/null "http://$http/readyz"; }
admin() { # method path json
  curl -sf -o /dev/null -X "$1" "http://$http$2" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -d "$3"
}

start first
for _ in $(seq 300); do ready && break; sleep 0.1; done
ready || { echo "recovery: the server did not become ready ($out/first.log)" >&2; exit 1; }
admin POST /v1/accounts '{"account_id": "probe", "kind": "joint"}'
admin POST /v1/accounts/probe/members '{"member_id": "ana", "role": "owner"}'
admin POST /v1/accounts/probe/cards '{"card_id": "probe-card", "member_id": "ana"}'
admin POST /v1/accounts/probe/deposits \
  '{"idempotency_key": "probe-seed", "currency": "EUR", "amount_minor": 100000, "member_id": "ana"}'

"$bin/tandem-loadtest" run --target "grpc://$grpc" --token "$token" --accounts "$accounts" \
  --rate "$rate" --duration "$((load_seconds + 600))s" --scenario authorize --settle \
  --no-audit --report "$out/loadtest" > "$out/loadtest.out" 2> "$out/loadtest.err" &
loadtest=$!
provisioning=$(now_ms)
until grep -q '^provisioned' "$out/loadtest.err"; do
  kill -0 "$loadtest" 2>/dev/null || { echo "recovery: tandem-loadtest stopped ($out/loadtest.err)" >&2; exit 1; }
  sleep 0.5
done
echo "provisioned $accounts accounts in $(( ($(now_ms) - provisioning) / 1000 )) s; $load_seconds s of load at $rate/s"
sleep "$load_seconds"
kill -9 "$server"
wait "$server" 2>/dev/null || true
kill -9 "$loadtest" 2>/dev/null || true
wait "$loadtest" 2>/dev/null || true
loadtest=
echo "killed -9 after $load_seconds s of load; data directory $(du -sh "$data" | cut -f1)"

started=$(now_ms)
start restart
until ready; do
  kill -0 "$server" 2>/dev/null || { echo "recovery: the server exited ($out/restart.log)" >&2; exit 1; }
  sleep 0.005
done
ready_at=$(now_ms)
answer=$(curl -sf -X POST "http://$http/v1/authorizations" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"idempotency_key": "probe-after-kill", "card_id": "probe-card",
  "amount_minor": 1000, "currency": "EUR", "mcc": "5411", "channel": "chip"}')
answered_at=$(now_ms)
code=$(printf '%s' "$answer" | sed -n 's/.*"response_code":"\([0-9]*\)".*/\1/p')
echo "restart: ready after $((ready_at - started)) ms; the cold probe account's first authorization answered ($code) after $((answered_at - started)) ms"
grep -iE 'replay|recover|checkpoint' "$out/restart.log" | head -5 || true
[ "$code" = 00 ] || { echo "recovery: the probe was not approved: $answer" >&2; exit 1; }
