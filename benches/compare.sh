#!/usr/bin/env bash
# Tandem beside TigerBeetle, in one sitting, counting approvals.
#
#   benches/compare.sh [quick|full]      (quick: 5 s a shape; full: 20 s, the lifecycle mixes
#                                          60 s; SECONDS_PER_SHAPE=N overrides)
#   benches/compare.sh cluster[-full]    three Tandem nodes (scripts/cluster.sh) beside three
#                                          TigerBeetle replicas, and beside Tandem's own single
#                                          node, on the shapes of issue 38, plus follower reads
#                                          (5 s a shape; cluster-full 20 s)
#
# For each shape it runs the TigerBeetle peer ($TANDEM_PEERS, default ../shared/peers; read
# only, its data in a temporary directory) and a fresh release `tandem serve` (a new data
# directory per shape) back to back, then prints one table: approvals/s, p50 and p99 of the
# approvals, and CPU seconds per 1,000 approvals of server and client, for each side and the
# ratio. A client above 0.8 of a core is flagged client-bound. Unary gRPC is also set beside a
# bare tonic echo (benches/examples/echo.rs) driven the same way: the transport's ceiling.
#
# Exits non-zero, after the table, if any Tandem run's money audit is not clean or a run
# failed. Not part of CI. Reports go to target/compare/<time>/ (table.md, results.tsv and one
# tandem-loadtest report per run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=${1:-quick}
tb_replicas=1
case $mode in
  quick) seconds=${SECONDS_PER_SHAPE:-5} ;;
  full) seconds=${SECONDS_PER_SHAPE:-20} ;;
  cluster) seconds=${SECONDS_PER_SHAPE:-5} tb_replicas=3 ;;
  cluster-full) seconds=${SECONDS_PER_SHAPE:-20} tb_replicas=3 ;;
  *) echo "usage: benches/compare.sh [quick|full|cluster|cluster-full]" >&2; exit 2 ;;
esac
peers=$(cd "${TANDEM_PEERS:-$root/../shared/peers}" && pwd)
tb=$peers/tigerbeetle
for needed in "$tb/tigerbeetle" "$tb/tb-client-bench"; do
  [ -x "$needed" ] || { echo "compare: $needed is missing (see $peers/README.md)" >&2; exit 2; }
done
for tool in jq curl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "compare: needs $tool (Debian: jq, curl, time)" >&2; exit 2; }
done

cargo build --release -q -p tandem-server -p tandem-loadtest
cargo build --release -q -p tandem-benches --example echo
target=${CARGO_TARGET_DIR:-$root/target}
# TigerBeetle's client driven open loop (benches/tb-open-loop, outside the workspace).
CARGO_TARGET_DIR=$target/tb-open-loop cargo build --release -q --manifest-path benches/tb-open-loop/Cargo.toml
tb_open=$target/tb-open-loop/release/tb-open-loop
bin=$target/release
out=$target/compare/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
tmp=$(mktemp -d)
pids=()
cleanup() {
  [ -n "${CLUSTER_DIR:-}" ] && scripts/cluster.sh down >/dev/null 2>&1
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # user + system, USER_HZ (100)
cpu_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 100 }'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# One line per run, tab separated:
# shape side approvals/s approvals p50_ms p99_ms server_cpu_s client_cpu_s client_cores audit note
results=$out/results.tsv
: > "$results"
failed=0
row() { printf '%s\t' "$@" | sed 's/\t$//' >> "$results"; echo >> "$results"; }

# TigerBeetle: a fresh cluster of $tb_replicas replicas (as the peer's run.sh starts it: one,
# or three for the cluster shapes), their CPU read from /proc around the client, the
# client's from /usr/bin/time.
tb_port=3390
peer() { # shape client client-args...
  local shape=$1 client=$2 dir=$tmp/tb-$1 r addresses servers=()
  shift 2
  mkdir -p "$dir"
  addresses=$(seq -s, -f '127.0.0.1:%g' $tb_port $((tb_port + tb_replicas - 1)))
  for ((r = 0; r < tb_replicas; r++)); do
    "$tb/tigerbeetle" format --cluster=0 --replica=$r --replica-count=$tb_replicas --development "$dir/0_$r.tigerbeetle" >/dev/null 2>&1
  done
  for ((r = 0; r < tb_replicas; r++)); do
    "$tb/tigerbeetle" start --addresses="$addresses" --development "$dir/0_$r.tigerbeetle" >"$dir/replica$r.log" 2>&1 &
    servers+=($!)
    pids+=($!)
  done
  for ((r = 0; r < tb_replicas; r++)); do
    wait_port $((tb_port + r)) || { echo "compare: TigerBeetle did not start ($dir/replica$r.log)" >&2; exit 1; }
  done
  local before=0 after=0 line server
  for server in "${servers[@]}"; do before=$((before + $(ticks "$server"))); done
  line=$(TB_ADDRESSES=$addresses /usr/bin/time -f '%U %S %e' -o "$dir/time" "$client" "$@")
  for server in "${servers[@]}"; do after=$((after + $(ticks "$server"))); done
  for server in "${servers[@]}"; do stop "$server"; done
  read -r user sys wall < "$dir/time"
  local client_s
  client_s=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  local rate count p50 p99
  rate=$(sed -n 's/.*transfers\/s=\([0-9.]*\).*/\1/p' <<<"$line")
  count=$(sed -n 's/.* n=\([0-9]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.*p50=\([0-9.]*\)ms.*/\1/p' <<<"$line")
  p99=$(sed -n 's/.*p99=\([0-9.]*\)ms.*/\1/p' <<<"$line")
  local cores note=$line
  # The open-loop client counts the transfers it could not create.
  if [[ $line == *failed=* && $line != *failed=0* ]]; then
    echo "compare: TigerBeetle $shape: some transfers failed: $line" >&2
    note="FAILED TRANSFERS: $line"
    failed=1
  fi
  cores=$(awk -v c="$client_s" -v w="$wall" 'BEGIN { printf "%.2f", c / w }')
  row "$shape" tigerbeetle "$rate" "$count" "$p50" "$p99" "$(cpu_s "$before" "$after")" "$client_s" "$cores" - "$note"
  echo "  tigerbeetle $shape: $line" >&2
}

# Tandem: a fresh `tandem serve` per shape; tandem-loadtest reads both processes' CPU for the
# measured run only (not provisioning or the audit).
token=compare-admin
grpc=127.0.0.1:50161 http=127.0.0.1:8191 iso=127.0.0.1:8693
server=
server_flags=() # extra `tandem serve` flags for the shapes that set them
start_tandem() {
  local data=$tmp/tandem-data-$1
  TANDEM_ADMIN_TOKEN=$token TANDEM_LOG=warn "$bin/tandem" serve --data-dir "$data" \
    --grpc-listen $grpc --http-listen $http --iso8583-listen $iso "${server_flags[@]}" > "$out/$1.server.log" 2>&1 &
  server=$!
  pids+=("$server")
  for _ in $(seq 200); do
    curl -sf "http://$http/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "compare: tandem serve did not become ready ($out/$1.server.log)" >&2
  exit 1
}

# Reads a tandem-loadtest report into a row; declines and errors, if any, go into its note,
# and for a run of 20 s or more, approvals and answers per second in its first and last 10 s
# (whole seconds) with the server's CPU per 1,000 answers: does the account slow as it ages?
report_row() { # shape side report-dir note
  local json=$3/report.json audit note=$4 other ageing
  other=$(jq -r '[(if .declined.count > 0 then "\(.declined.per_second | floor) declined/s (\(.declined_by | to_entries | max_by(.value) | .key) most)" else empty end), (if .errored.count > 0 then "\(.errored.per_second | floor) errored/s" else empty end)] | join(", ")' "$json")
  [ -n "$other" ] && note="$note; $other"
  ageing=$(jq -r '(.elapsed_s | floor) as $whole | [.over_time[] | select(.second < $whole)] as $s
    | if ($s | length) >= 20 then
        ($s[:10] | map(.approved) | add / 10) as $a0 | ($s[-10:] | map(.approved) | add / 10) as $a1
        | ($s[:10] | map(.count) | add / 10) as $n0 | ($s[-10:] | map(.count) | add / 10) as $n1
        | "approvals/s first 10 s \($a0 | floor), last 10 s \($a1 | floor) (\(if $a0 > 0 then $a1 * 100 / $a0 | floor else 0 end)%); answers/s \($n0 | floor) then \($n1 | floor) (\(if $n0 > 0 then $n1 * 100 / $n0 | floor else 0 end)%)\(if .cpu.server_s then "; server CPU s / 1k answers \(.cpu.server_s * 1000 / .total.count * 1000 | floor / 1000)" else "" end)"
      else empty end' "$json" 2>/dev/null || true)
  [ -n "$ageing" ] && note="$note; $ageing"
  audit=$(jq -r 'if .audit == null then "-" elif (.audit.findings | length) == 0 then "clean" else "\(.audit.findings | length) findings" end' "$json")
  row "$1" "$2" \
    "$(jq -r '.approvals_per_second | floor' "$json")" \
    "$(jq -r '.approved.count' "$json")" \
    "$(jq -r '.approved.p50_us / 1000' "$json")" \
    "$(jq -r '.approved.p99_us / 1000' "$json")" \
    "$(jq -r '.cpu.server_s // "-"' "$json")" \
    "$(jq -r '.cpu.client_s // "-"' "$json")" \
    "$(jq -r '.cpu.client_cores // 0 | . * 100 | floor / 100' "$json")" \
    "$audit" "$note"
}

# The row of a Tandem run: its report in $4, tandem-loadtest's exit status $5.
tandem_row() { # shape side note report status
  local shape=$1 side=$2 note=$3 report=$4 status=$5
  if [ ! -f "$report/report.json" ]; then
    echo "compare: $shape $side failed (exit $status): $(tail -3 "$report.err")" >&2
    row "$shape" "$side" 0 0 0 0 - - 0 "failed" "$note"
    failed=1
    return
  fi
  report_row "$shape" "$side" "$report" "$note"
  # Exit 3: the money audit found something. That fails the comparison, loudly.
  if [ "$status" -ne 0 ]; then
    echo "compare: $shape $side: the money audit is NOT clean (exit $status); see $report/report.md" >&2
    failed=1
  fi
  echo "  tandem $shape $side: $(jq -r '"\(.approvals_per_second | floor) approvals/s, p99 \(.approved.p99_us / 1000) ms"' "$report/report.json")" >&2
}

tandem() { # shape side note loadtest-args...
  local shape=$1 side=$2 note=$3
  shift 3
  start_tandem "$shape-$side"
  local status=0
  "$bin/tandem-loadtest" run --token $token --quiet --server-pid "$server" \
    --kid-share 0 --report "$out/$shape-$side" "$@" > /dev/null 2> "$out/$shape-$side.err" || status=$?
  stop "$server"
  tandem_row "$shape" "$side" "$note" "$out/$shape-$side" "$status"
}

echo_service() { # shape callers
  local shape=$1 callers=$2
  "$bin/examples/echo" 127.0.0.1:50171 2> "$out/$shape.echo.log" &
  local echo_pid=$!
  pids+=("$echo_pid")
  wait_port 50171
  "$bin/tandem-loadtest" run --echo --target grpc://127.0.0.1:50171 --token none --quiet \
    --server-pid "$echo_pid" --scenario authorize --accounts 5000 --kid-share 0 \
    --closed-loop --concurrency "$callers" --duration "${seconds}s" \
    --report "$out/$shape-echo" > /dev/null 2> "$out/$shape-echo.err" || failed=1
  stop "$echo_pid"
  report_row "$shape" echo "$out/$shape-echo" "bare tonic echo, unary"
  echo "  echo $shape: $(jq -r '.approvals_per_second | floor' "$out/$shape-echo/report.json")/s" >&2
}

# Three Tandem nodes on loopback (scripts/cluster.sh, a fresh cluster per run); callers spread
# over all three (followers forward writes to the leader), as a network spreads its links.
# Three nodes share this machine's cores, so each runs CLUSTER_WORKER_THREADS tokio workers
# (default 1; docs/operations.md, "Threads"); the single node keeps its default.
cluster_port_base=7400
cluster_workers=${CLUSTER_WORKER_THREADS:-1}
cluster_grpc=grpc://127.0.0.1:7401,grpc://127.0.0.1:7402,grpc://127.0.0.1:7403
start_cluster() { # name
  export CLUSTER_DIR=$tmp/cluster-$1 PORT_BASE=$cluster_port_base TANDEM_BIN=$bin/tandem
  export TANDEM_SERVE_ARGS="${server_flags[*]}"
  TOKIO_WORKER_THREADS=$cluster_workers scripts/cluster.sh up > "$out/$1.cluster.log" 2>&1 || {
    echo "compare: the cluster did not come up ($out/$1.cluster.log)" >&2
    exit 1
  }
  cluster_token=$(cat "$CLUSTER_DIR/admin.token")
}
stop_cluster() {
  scripts/cluster.sh down >/dev/null 2>&1 || true
  for n in 1 2 3; do cp "$CLUSTER_DIR/node$n.log" "$out/$cluster_run.node$n.log" 2>/dev/null || true; done
  unset CLUSTER_DIR
}
cluster_run=
tandem3() { # shape side note loadtest-args...
  local shape=$1 side=$2 note=$3
  shift 3
  cluster_run=$shape-$side
  start_cluster "$cluster_run"
  local status=0 report=$out/$cluster_run
  "$bin/tandem-loadtest" run --token "$cluster_token" --quiet --kid-share 0 --report "$report" \
    "$@" > /dev/null 2> "$report.err" || status=$?
  stop_cluster
  tandem_row "$shape" "$side" "$note" "$report" "$status"
}

# Balance reads over the two followers, linearizable (each confirms the leader's read index
# over the peer protocol, then reads its own applied state): reads/s and p99 in the row.
follower_reads() { # shape callers
  local shape=$1 callers=$2 leader followers=() n
  cluster_run=$shape
  start_cluster "$shape"
  for _ in $(seq 100); do
    leader=$("$bin/tandem" cluster status --target "127.0.0.1:$((cluster_port_base + 11))" --token "$cluster_token" 2>/dev/null | jq -r '.leader_id // empty')
    [ -n "$leader" ] && break
    sleep 0.1
  done
  for n in 1 2 3; do
    [ "$n" = "$leader" ] || followers+=("grpc://127.0.0.1:$((cluster_port_base + n))")
  done
  local report=$out/$shape status=0
  "$bin/tandem-loadtest" run --token "$cluster_token" --quiet --kid-share 0 --report "$report" \
    --target "$(IFS=,; echo "${followers[*]}")" --scenario reads --accounts 5000 \
    --closed-loop --concurrency "$callers" --duration "${seconds}s" > /dev/null 2> "$report.err" || status=$?
  stop_cluster
  if [ ! -f "$report/report.json" ] || [ "$status" -ne 0 ]; then
    echo "compare: $shape failed (exit $status): $(tail -3 "$report.err")" >&2
    row "$shape" "followers" 0 0 0 0 - - 0 "failed" "follower reads"
    failed=1
    return
  fi
  row "$shape" followers "$(jq -r '.reads.per_second | floor' "$report/report.json")" \
    "$(jq -r '.reads.count' "$report/report.json")" \
    "$(jq -r '.reads.p50_us / 1000' "$report/report.json")" \
    "$(jq -r '.reads.p99_us / 1000' "$report/report.json")" - - 0 \
    "$(jq -r 'if (.audit.findings | length) == 0 then "clean" else "findings" end' "$report/report.json")" \
    "balance reads/s (not approvals), linearizable, $callers callers over the two followers (leader: node $leader)"
  echo "  tandem $shape: $(jq -r '"\(.reads.per_second | floor) reads/s, p99 \(.reads.p99_us / 1000) ms"' "$report/report.json")" >&2
}

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+dirty")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "compare ($mode, ${seconds} s a shape) at $commit, load $load_before" >&2
closed=(--closed-loop --duration "${seconds}s")
stream=(--target "grpc://$grpc" --stream --connections 2)
unary=(--target "grpc://$grpc")
hot_lifecycle=(--scenario authorize --settle --accounts 1)

# The open-loop shape's schedule: TigerBeetle's shape-1 rate, in units of a hold and its
# clearing (two approvals each).
open_loop_rate() {
  tb_rate=$(awk -F'\t' '$1 == "hot1-c32-lifecycle" && $2 == "tigerbeetle" { print $3 }' "$results")
  units=$(awk -v r="$tb_rate" 'BEGIN { printf "%.0f", r / 2 }')
}

# Prints the table and exits, non-zero if a run failed or an audit was not clean.
finish() {
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  python3 "$root/benches/compare_table.py" "$results" "$mode" "$seconds" "$commit" "$load_before" "$load_after" \
    | tee "$out/table.md"
  echo "reports in $out" >&2
  if [ "$failed" -ne 0 ]; then
    echo "compare: FAILED: a run failed or a money audit was not clean (see above)" >&2
    exit 1
  fi
  exit 0
}

if [ "$tb_replicas" = 3 ]; then
  # Issue 38: the cluster beside a three-replica TigerBeetle (the `tigerbeetle` rows here are
  # three replicas) and beside Tandem's single node, in one sitting.
  cstream=(--target "$cluster_grpc" --stream --connections 2)
  cunary=(--target "$cluster_grpc")
  holds=(--scenario authorize --accounts 5000)
  peer hot1-c32-lifecycle "$tb/tb-client-bench" 32 "$seconds" 1 lifecycle
  tandem3 hot1-c32-lifecycle cluster-stream "three nodes ($cluster_workers worker each), processor stream" "${cstream[@]}" "${hot_lifecycle[@]}" "${closed[@]}" --concurrency 32
  tandem hot1-c32-lifecycle single-stream "one node, processor stream" "${stream[@]}" "${hot_lifecycle[@]}" "${closed[@]}" --concurrency 32
  peer acct5000-c32-holds "$tb/tb-client-bench" 32 "$seconds" 5000 hold
  tandem3 acct5000-c32-holds cluster-stream "three nodes ($cluster_workers worker each), processor stream" "${cstream[@]}" "${holds[@]}" "${closed[@]}" --concurrency 32
  tandem acct5000-c32-holds single-stream "one node, processor stream" "${stream[@]}" "${holds[@]}" "${closed[@]}" --concurrency 32
  tandem3 acct5000-c32-holds cluster-unary "three nodes ($cluster_workers worker each), unary" "${cunary[@]}" "${holds[@]}" "${closed[@]}" --concurrency 32
  tandem acct5000-c32-holds single-unary "one node, unary" "${unary[@]}" "${holds[@]}" "${closed[@]}" --concurrency 32
  peer acct10000-c1024-lifecycle "$tb/tb-client-bench" 1024 "$seconds" 10000 lifecycle
  tandem3 acct10000-c1024-lifecycle cluster-stream "three nodes ($cluster_workers worker each), processor stream" "${cstream[@]}" --scenario authorize --settle \
    --accounts 10000 "${closed[@]}" --concurrency 1024
  tandem acct10000-c1024-lifecycle single-stream "one node, processor stream" "${stream[@]}" --scenario authorize --settle \
    --accounts 10000 "${closed[@]}" --concurrency 1024
  open_loop_rate
  peer hot1-open-lifecycle "$tb_open" "$units" "$seconds" 1
  tandem3 hot1-open-lifecycle cluster-stream "open loop at TigerBeetle's shape-1 rate, $tb_rate approvals/s" \
    "${cstream[@]}" "${hot_lifecycle[@]}" --rate "$units" --duration "${seconds}s"
  follower_reads reads-c32-followers 32
  finish
fi

# 1. One hot account, 32 callers, lifecycle (hold, then clear in full).
peer hot1-c32-lifecycle "$tb/tb-client-bench" 32 "$seconds" 1 lifecycle
tandem hot1-c32-lifecycle stream "processor stream" "${stream[@]}" "${hot_lifecycle[@]}" "${closed[@]}" --concurrency 32
tandem hot1-c32-lifecycle unary "unary" "${unary[@]}" "${hot_lifecycle[@]}" "${closed[@]}" --concurrency 32
tandem hot1-c32-lifecycle iso8583 "ISO 8583, 16 links" --target "iso8583://$iso" --admin-target "http://$http" \
  --connections 16 "${hot_lifecycle[@]}" "${closed[@]}" --concurrency 32

# 2. 5,000 accounts, 32 callers, holds (each caller places one hold at a time).
holds=(--scenario authorize --accounts 5000)
peer acct5000-c32-holds "$tb/tb-client-bench" 32 "$seconds" 5000 hold
tandem acct5000-c32-holds stream "processor stream" "${stream[@]}" "${holds[@]}" "${closed[@]}" --concurrency 32
tandem acct5000-c32-holds unary "unary" "${unary[@]}" "${holds[@]}" "${closed[@]}" --concurrency 32
echo_service acct5000-c32-holds 32
tandem acct5000-c256-holds unary "unary" "${unary[@]}" "${holds[@]}" "${closed[@]}" --concurrency 256
echo_service acct5000-c256-holds 256

# 3. 1,024 callers, lifecycle, on one hot account and on 10,000 accounts, over the stream.
peer hot1-c1024-lifecycle "$tb/tb-client-bench" 1024 "$seconds" 1 lifecycle
tandem hot1-c1024-lifecycle stream "processor stream" "${stream[@]}" "${hot_lifecycle[@]}" "${closed[@]}" --concurrency 1024
peer acct10000-c1024-lifecycle "$tb/tb-client-bench" 1024 "$seconds" 10000 lifecycle
tandem acct10000-c1024-lifecycle stream "processor stream" "${stream[@]}" --scenario authorize --settle \
  --accounts 10000 "${closed[@]}" --concurrency 1024

# 4. Open loop (Poisson) at the rate TigerBeetle sustained in shape 1, both sides, p99 from the
# scheduled time. A unit of work is a hold and its clearing, two approvals, so the schedule
# runs at half the transfer rate.
open_loop_rate
open=(--rate "$units" --duration "${seconds}s")
peer hot1-open-lifecycle "$tb_open" "$units" "$seconds" 1
tandem hot1-open-lifecycle stream "open loop at TigerBeetle's shape-1 rate, $tb_rate approvals/s" \
  "${stream[@]}" "${hot_lifecycle[@]}" "${open[@]}"
tandem hot1-open-lifecycle unary "open loop at TigerBeetle's shape-1 rate, $tb_rate approvals/s" \
  "${unary[@]}" "${hot_lifecycle[@]}" "${open[@]}"

# 5. Issue 35: the lifecycle mix as real traffic runs it, one hot account, 32 callers over the
# stream: the `lifecycle` scenario without --settle leaves about one authorization in ten open
# (and one in twelve incremented, open until it expires). Set beside TigerBeetle's hot
# lifecycle of shape 1 (the same sitting). 60 s each in full mode.
mix_seconds=$seconds
[ "$mode" = full ] && [ -z "${SECONDS_PER_SHAPE:-}" ] && mix_seconds=60
mix=(--scenario lifecycle --accounts 1)
same_as() { # tigerbeetle-shape new-shape note: TigerBeetle's row of a shape, under another name
  awk -F'\t' -v OFS='\t' -v from="$1" -v to="$2" -v note="$3" \
    '$1 == from && $2 == "tigerbeetle" { $1 = to; $11 = note; print }' "$results" > "$tmp/same-as"
  cat "$tmp/same-as" >> "$results"
}
for shape in hot1-c32-lifecycle-settled hot1-c32-lifecycle-mix hot1-c32-lifecycle-cap; do
  same_as hot1-c32-lifecycle "$shape" "shape 1 (hot lifecycle), same sitting"
done
same_as hot1-open-lifecycle hot1-open-lifecycle-mix "shape 4 (open loop at its shape-1 rate), same sitting"
# The same mix settled (every hold closed before the next): what a full account's answers
# cost is set beside this.
tandem hot1-c32-lifecycle-settled stream "lifecycle mix, settled" "${stream[@]}" "${mix[@]}" --settle \
  --closed-loop --duration "${mix_seconds}s" --concurrency 32
# (a) Holds expire after 2 s, swept every second: the account reaches a steady state.
server_flags=(--hold-expiry-secs 2 --sweep-every-secs 1)
tandem hot1-c32-lifecycle-mix stream "lifecycle mix, holds expire in 2 s" "${stream[@]}" "${mix[@]}" \
  --hold-expiry 2s --closed-loop --duration "${mix_seconds}s" --concurrency 32
# (c) Open loop at TigerBeetle's shape-1 rate (two approvals a unit, as shape 4), same server.
tandem hot1-open-lifecycle-mix stream "lifecycle mix open loop at TigerBeetle's shape-1 rate, $tb_rate approvals/s" \
  "${stream[@]}" "${mix[@]}" --hold-expiry 2s "${open[@]}"
# (b) The default expiry (7 days): the account fills to its open-hold limit and stays there,
# declining new authorizations 05 (too_many_open_holds) while the rest still pass.
server_flags=()
tandem hot1-c32-lifecycle-cap stream "lifecycle mix at the open-hold limit (default expiry)" "${stream[@]}" "${mix[@]}" \
  --closed-loop --duration "${mix_seconds}s" --concurrency 32

finish
