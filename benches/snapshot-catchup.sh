#!/usr/bin/env bash
# A follower brought back by a snapshot, on three real processes (issue 37): the leader's
# state size, how long the install takes, the memory of leader and follower while it runs,
# and the state digests of both after it.
#
#   benches/snapshot-catchup.sh    (ACCOUNTS=20000 LOAD1=30s; BIN=path/to/tandem to measure
#                                   another build)
#
# Three nodes come up with scripts/cluster.sh (in target/snapshot-catchup), a lifecycle load
# grows the state through the leader, one follower is killed with SIGKILL, a second load
# writes past the leader's purge point, and the follower is restarted: it is sent a snapshot.
# Leader memory is sampled as RssAnon every 100 ms during the send (the store's block cache,
# --checkpoint-cache-bytes, fills as the snapshot is read: it bounds what a send adds).
set -uo pipefail
cd "$(dirname "$0")/.."
export CLUSTER_DIR=${CLUSTER_DIR:-target/snapshot-catchup} PORT_BASE=7100
bin=${BIN:-target/release/tandem}
lt=target/release/tandem-loadtest
export TANDEM_BIN=$bin
[ -x "$lt" ] || cargo build --release -p tandem-server -p tandem-loadtest
rss() { awk "/$2/{print \$2}" "/proc/$1/status"; }
scripts/cluster.sh down >/dev/null 2>&1 || true
rm -rf "$CLUSTER_DIR"
scripts/cluster.sh up
token=$(cat "$CLUSTER_DIR/admin.token")
sleep 2
leader=$("$bin" cluster status --target "127.0.0.1:7111" --token "$token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["leader_id"])')
follower=$((leader == 3 ? 2 : 3))
echo "leader $leader; stopping follower $follower"
"$lt" run --target "grpc://127.0.0.1:710$leader" --token "$token" --accounts "${ACCOUNTS:-20000}" \
    --scenario lifecycle --stream --closed-loop --concurrency 64 --duration "${LOAD1:-30s}" \
    --report "$CLUSTER_DIR/report-1" --quiet --no-audit | tail -2
kill -9 "$(cat "$CLUSTER_DIR/node$follower.pid")"
"$lt" run --target "grpc://127.0.0.1:710$leader" --token "$token" --accounts 2000 \
    --scenario authorize --stream --closed-loop --concurrency 64 --duration 15s \
    --report "$CLUSTER_DIR/report-2" --quiet --no-audit | tail -1
du -sh "$CLUSTER_DIR/node$leader/checkpoint"
lpid=$(cat "$CLUSTER_DIR/node$leader.pid")
n=$follower
TANDEM_ADMIN_TOKEN=$token "$bin" serve --data-dir "$CLUSTER_DIR/node$n" --node-id "$n" \
    --peers "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103" \
    --pan-key-file "$CLUSTER_DIR/pan.key" --grpc-listen "127.0.0.1:710$n" \
    --http-listen "127.0.0.1:711$n" --iso8583-listen "127.0.0.1:712$n" \
    >"$CLUSTER_DIR/node$n.out" 2>"$CLUSTER_DIR/node$n.log" &
fpid=$!
echo $fpid >"$CLUSTER_DIR/node$n.pid"
start=$(date +%s.%N)
lbase=$(rss "$lpid" RssAnon)
lmax=$lbase
fmax=0
installed=
for _ in $(seq 1 1200); do
    sleep 0.1
    l=$(rss "$lpid" RssAnon); f=$(rss "$fpid" VmRSS)
    [ "$l" -gt "$lmax" ] && lmax=$l
    [ "${f:-0}" -gt "$fmax" ] && fmax=$f
    if [ -z "$installed" ] && curl -s -H "authorization: Bearer $token" "http://127.0.0.1:711$n/metrics" |
        grep -qE '^tandem_snapshot_installs_total [1-9]'; then
        installed=$(echo "$(date +%s.%N) - $start" | bc)
        echo "follower restarted to snapshot installed: $installed s"
        break
    fi
done
sleep 2
curl -s -H "authorization: Bearer $token" "http://127.0.0.1:711$n/metrics" |
    grep -E '^tandem_snapshot_install_seconds_(sum|count)'
echo "leader RssAnon before the send $((lbase / 1024)) MB, at most $((lmax / 1024)) MB during it (+$(((lmax - lbase) / 1024)) MB); follower RSS at most $((fmax / 1024)) MB"
du -sh "$CLUSTER_DIR/node$n"/checkpoint*
for x in $leader $n; do
    curl -s -H "authorization: Bearer $token" "http://127.0.0.1:711$x/v1/cluster/digest"
    echo " (node $x)"
done
scripts/cluster.sh down
