#!/usr/bin/env bash
# A/B: the closed-loop maximum of a base commit beside this checkout, interleaved in one
# sitting (base, head, then head, base, ...), each run on a fresh release `tandem serve` and a
# fresh data directory, driven by this checkout's tandem-loadtest. Prints approvals/s per run,
# the median of each side and head/base; exits 1 when a head median is under FLOOR (default
# 0.95) of its base median, so "speed does not drop" is one command.
#
# Usage: benches/ab.sh BASE_REV [RUNS] [SECONDS]   (default 3 runs of 10 s each)
#   PROTOCOLS="unary iso8583" (default; also stream, http), SCENARIO=authorize, ACCOUNTS=10000.
# The base is built once in a temporary worktree into target/ab/<rev>; reports go to
# target/ab-reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=$(git rev-parse --short "${1:?usage: benches/ab.sh BASE_REV [RUNS] [SECONDS]}")
runs=${2:-3}
seconds=${3:-10}
protocols=${PROTOCOLS:-unary iso8583}
scenario=${SCENARIO:-authorize}
accounts=${ACCOUNTS:-10000}
floor=${FLOOR:-0.95}
head_rev=$(git rev-parse --short HEAD)
[ -n "$(git status --porcelain --untracked-files=no)" ] && head_rev="$head_rev+dirty"

base_target=target/ab/$base_rev
if [ ! -x "$base_target/release/tandem" ]; then
  tree=$(mktemp -d)
  git worktree add --detach "$tree" "$base_rev" > /dev/null
  CARGO_TARGET_DIR="$PWD/$base_target" cargo build --release -p tandem-server \
    --manifest-path "$tree/Cargo.toml"
  git worktree remove --force "$tree"
fi
cargo build --release -p tandem-server -p tandem-loadtest

out=target/ab-reports
rm -rf "$out" && mkdir -p "$out"
token=ab-admin
server=
data=
stop() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  server=
  if [ -n "$data" ]; then rm -rf "$data"; fi
  data=
}
trap stop EXIT

start() { # binary
  data=$(mktemp -d)
  TANDEM_ADMIN_TOKEN=$token TANDEM_LOG=warn "$1" serve --data-dir "$data" \
    --grpc-listen 127.0.0.1:50161 --http-listen 127.0.0.1:8190 --iso8583-listen 127.0.0.1:8693 \
    > "$out/server-$2.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do
    curl -sf http://127.0.0.1:8190/readyz > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the $2 server did not become ready; see $out/server-$2.log" >&2
  exit 1
}

measure() { # side run protocol -> approvals/s
  local side=$1 run=$2 protocol=$3 target extra
  case $protocol in
    unary) target=grpc://127.0.0.1:50161; extra=(--concurrency 256) ;;
    stream) target=grpc://127.0.0.1:50161; extra=(--stream --connections 2 --concurrency 2048) ;;
    http) target=http://127.0.0.1:8190; extra=(--concurrency 256) ;;
    iso8583) target=iso8583://127.0.0.1:8693
      extra=(--admin-target http://127.0.0.1:8190 --connections 16 --concurrency 2048) ;;
    *) echo "unknown protocol $protocol" >&2; exit 2 ;;
  esac
  local report=$out/$side-$run-$protocol
  target/release/tandem-loadtest run --target "$target" --token $token --quiet --no-audit \
    --duration "${seconds}s" --report "$report" --scenario "$scenario" \
    --accounts "$accounts" --closed-loop "${extra[@]}" > /dev/null
  python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["approvals_per_second"]))' \
    "$report/report.json"
}

results=$out/results.tsv
: > "$results"
echo "A/B $scenario, $accounts accounts, ${seconds}s a run, base $base_rev vs head $head_rev"
for run in $(seq "$runs"); do
  # Alternate which side goes first, so a drift in the machine's load favours neither.
  sides="base head"
  [ $((run % 2)) -eq 0 ] && sides="head base"
  for side in $sides; do
    binary=target/release/tandem
    [ "$side" = base ] && binary=$base_target/release/tandem
    start "$binary" "$side"
    for protocol in $protocols; do
      approvals=$(measure "$side" "$run" "$protocol")
      load=$(cut -d' ' -f1 /proc/loadavg)
      printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$run" "$protocol" "$approvals" "$load" >> "$results"
      printf 'run %s %-4s %-8s %8s approvals/s  load %s\n' "$run" "$side" "$protocol" "$approvals" "$load"
    done
    stop
  done
done

python3 - "$results" "$floor" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
floor = float(sys.argv[2])
failed = False
print(f"{'protocol':<10}{'base median':>14}{'head median':>14}{'head/base':>11}")
for protocol in dict.fromkeys(r[2] for r in rows):
    median = lambda side: statistics.median(int(r[3]) for r in rows if r[0] == side and r[2] == protocol)
    base, head = median("base"), median("head")
    ratio = head / base if base else float("inf")
    verdict = "ok" if ratio >= floor else f"UNDER {floor}"
    failed |= ratio < floor
    print(f"{protocol:<10}{base:>14,.0f}{head:>14,.0f}{ratio:>10.2f}x  {verdict}")
sys.exit(1 if failed else 0)
PY
