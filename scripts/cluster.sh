#!/usr/bin/env bash
# Three Tandem nodes on loopback, formed into one cluster, in one command.
#
#   scripts/cluster.sh up      # build (release) if needed, start nodes 1-3, form the cluster
#   scripts/cluster.sh up --delay 20ms  # the same, every link between two nodes delayed 20 ms
#                                 # each way (regions on one machine; kept for `start N`)
#   scripts/cluster.sh down    # stop them (SIGTERM: each drains and exits cleanly)
#   scripts/cluster.sh status  # the cluster as node 1 sees it
#   scripts/cluster.sh kill-leader  # SIGKILL the current leader; prints "node N (pid P) at MS"
#                                 # (MS: the kill's time, milliseconds since the epoch)
#   scripts/cluster.sh kill N       # SIGKILL node N
#   scripts/cluster.sh start N      # start node N again on its data directory
#
# Environment: CLUSTER_DIR (default ./cluster: data, logs, the PAN key and the admin token),
# PORT_BASE (default 7100: node N listens for gRPC on PORT_BASE+N, HTTP on PORT_BASE+10+N,
# ISO 8583 on PORT_BASE+20+N), TANDEM_BIN (default: target/release/tandem, built if absent),
# TANDEM_SERVE_ARGS (more `tandem serve` arguments for every node).
set -euo pipefail

cd "$(dirname "$0")/.."
dir=${CLUSTER_DIR:-cluster}
base=${PORT_BASE:-7100}
bin=${TANDEM_BIN:-target/release/tandem}

grpc() { echo $((base + $1)); }
http() { echo $((base + 10 + $1)); }
iso() { echo $((base + 20 + $1)); }

# Starts node $1 in the background unless it runs already.
spawn() {
    local n=$1 token peers
    token=$(cat "$dir/admin.token")
    peers="1=127.0.0.1:$(grpc 1),2=127.0.0.1:$(grpc 2),3=127.0.0.1:$(grpc 3)"
    if [ -f "$dir/node$n.pid" ] && kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
        echo "node $n already runs (pid $(cat "$dir/node$n.pid"))"
        return
    fi
    local delays=()
    if [ -s "$dir/link-delay" ]; then
        local delay others=() m
        delay=$(cat "$dir/link-delay")
        for m in 1 2 3; do [ "$m" = "$n" ] || others+=("$m=$delay"); done
        delays=(--link-delay "$(IFS=,; echo "${others[*]}")")
    fi
    TANDEM_ADMIN_TOKEN=$token "$bin" serve --data-dir "$dir/node$n" --node-id "$n" \
        --peers "$peers" --pan-key-file "$dir/pan.key" "${delays[@]}" \
        --grpc-listen "127.0.0.1:$(grpc "$n")" --http-listen "127.0.0.1:$(http "$n")" \
        --iso8583-listen "127.0.0.1:$(iso "$n")" ${TANDEM_SERVE_ARGS:-} \
        >"$dir/node$n.out" 2>>"$dir/node$n.log" &
    echo $! >"$dir/node$n.pid"
}

# Waits until node $1 says it is ready (30 s at most).
ready() {
    local n=$1
    for _ in $(seq 1 300); do
        grep -q "tandem ready" "$dir/node$n.out" 2>/dev/null && return
        if ! kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
            echo "node $n did not start:" >&2
            cat "$dir/node$n.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "node $n not ready after 30 s" >&2
    exit 1
}

# SIGKILL node $1 (what a crashed machine does: no drain).
kill_node() {
    local n=$1 pid
    pid=$(cat "$dir/node$n.pid")
    kill -KILL "$pid" 2>/dev/null || true
    at=$(date +%s%3N)
    while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
    rm -f "$dir/node$n.pid"
    echo "node $n (pid $pid) at $at"
}

# The leader's id, as the first node that answers sees it.
leader_id() {
    local n id
    for n in 1 2 3; do
        [ -f "$dir/node$n.pid" ] || continue
        id=$("$bin" cluster status --target "127.0.0.1:$(http "$n")" --token "$(cat "$dir/admin.token")" 2>/dev/null |
            grep -o '"leader_id": *[0-9]*' | grep -o '[0-9]*$' || true)
        if [ -n "$id" ]; then
            echo "$id"
            return
        fi
    done
    echo "no node knows a leader" >&2
    exit 1
}

up() {
    if [ ! -x "$bin" ]; then
        cargo build --release -p tandem-server
    fi
    mkdir -p "$dir"
    [ -f "$dir/pan.key" ] || "$bin" keygen --pan-key "$dir/pan.key" >/dev/null
    if [ ! -f "$dir/admin.token" ]; then
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$dir/admin.token")
    fi
    token=$(cat "$dir/admin.token")
    if [ "${1:-}" = "--delay" ]; then
        echo "${2:?--delay needs a delay, like 20ms}" >"$dir/link-delay"
    else
        rm -f "$dir/link-delay"
    fi
    for n in 1 2 3; do
        spawn "$n"
    done
    for n in 1 2 3; do
        ready "$n"
    done
    "$bin" cluster init --target "127.0.0.1:$(http 1)" --token "$token" >/dev/null
    for n in 1 2 3; do
        echo "node $n: grpc 127.0.0.1:$(grpc $n)  http 127.0.0.1:$(http $n)  iso8583 127.0.0.1:$(iso $n)  data $dir/node$n"
    done
    echo "admin token: $token (also in $dir/admin.token)"
    echo "status: $0 status   stop: $0 down"
}

down() {
    for n in 1 2 3; do
        pidfile="$dir/node$n.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -TERM "$pid" 2>/dev/null; then
            for _ in $(seq 1 200); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
        rm -f "$pidfile"
        echo "node $n stopped"
    done
}

status() {
    "$bin" cluster status --target "127.0.0.1:$(http 1)" --token "$(cat "$dir/admin.token")"
}

case "${1:-}" in
up) up "${@:2}" ;;
down) down ;;
status) status ;;
kill-leader) kill_node "$(leader_id)" ;;
kill) kill_node "${2:?which node}" ;;
start)
    spawn "${2:?which node}"
    ready "$2"
    ;;
*)
    echo "usage: $0 up [--delay 20ms]|down|status|kill-leader|kill N|start N" >&2
    exit 2
    ;;
esac
