#!/usr/bin/env bash
# Three Tandem nodes on loopback, formed into one cluster, in one command.
#
#   scripts/cluster.sh up      # build (release) if needed, start nodes 1-3, form the cluster
#   scripts/cluster.sh down    # stop them (SIGTERM: each drains and exits cleanly)
#   scripts/cluster.sh status  # the cluster as node 1 sees it
#
# Environment: CLUSTER_DIR (default ./cluster: data, logs, the PAN key and the admin token),
# PORT_BASE (default 7100: node N listens for gRPC on PORT_BASE+N, HTTP on PORT_BASE+10+N,
# ISO 8583 on PORT_BASE+20+N), TANDEM_BIN (default: target/release/tandem, built if absent).
set -euo pipefail

cd "$(dirname "$0")/.."
dir=${CLUSTER_DIR:-cluster}
base=${PORT_BASE:-7100}
bin=${TANDEM_BIN:-target/release/tandem}

grpc() { echo $((base + $1)); }
http() { echo $((base + 10 + $1)); }
iso() { echo $((base + 20 + $1)); }

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
    peers="1=127.0.0.1:$(grpc 1),2=127.0.0.1:$(grpc 2),3=127.0.0.1:$(grpc 3)"
    for n in 1 2 3; do
        if [ -f "$dir/node$n.pid" ] && kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
            echo "node $n already runs (pid $(cat "$dir/node$n.pid"))"
            continue
        fi
        TANDEM_ADMIN_TOKEN=$token "$bin" serve --data-dir "$dir/node$n" --node-id "$n" \
            --peers "$peers" --pan-key-file "$dir/pan.key" \
            --grpc-listen "127.0.0.1:$(grpc $n)" --http-listen "127.0.0.1:$(http $n)" \
            --iso8583-listen "127.0.0.1:$(iso $n)" >"$dir/node$n.out" 2>"$dir/node$n.log" &
        echo $! >"$dir/node$n.pid"
    done
    for n in 1 2 3; do
        for _ in $(seq 1 300); do
            grep -q "tandem ready" "$dir/node$n.out" 2>/dev/null && break
            if ! kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
                echo "node $n did not start:" >&2
                cat "$dir/node$n.log" >&2
                exit 1
            fi
            sleep 0.1
        done
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
up) up ;;
down) down ;;
status) status ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
