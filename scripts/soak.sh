#!/usr/bin/env bash
# Soak run: every demo server built with `--features faults`, injecting faults into its own
# system calls, driven by the benchmark load tools for a while; then a table of the faults
# survived, the bytes (and requests) verified, and resident memory and descriptors at the
# start and the end of the load.
#
#   scripts/soak.sh [--duration SECS] [--rate P] [--kinds K1,K2,...] [--seed N] [--out FILE]
#
# Defaults: 600 s, 1 %, the kinds that never end a connection (the load tools treat any closed
# connection as a failure, so every connection must survive: a lost one is a bug), seed 1.
# Connection-fatal kinds (reset, nomem) are the torture suite's subject (tests/faults.rs).
# Not part of `cargo test`; needs wrk and redis-benchmark (Debian: wrk, redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=600
rate=0.01
kinds=short_read,short_write,eintr,eagain,spurious_ready,emfile
seed=1
out=target/soak/report.md
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --kinds) kinds=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "usage: $0 [--duration SECS] [--rate P] [--kinds K,...] [--seed N] [--out FILE]" >&2
           exit 2 ;;
    esac
done
for tool in wrk redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is not installed" >&2; exit 1; }
done

echo "==> building the demos with --features faults and the load tools"
cargo build -q --release --features faults --example echo --example http --example redis \
    --example proxy
cargo build -q --release -p eventide-bench --bin echo-load --bin udp-load
bin=target/release/examples
load=target/release
dir=$(mktemp -d "${TMPDIR:-/tmp}/eventide-soak.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME SEED_OFFSET CMD...: runs a demo with faults on, waits for its `listening on` line.
start() {
    local name=$1 offset=$2; shift 2
    EVENTIDE_FAULTS="seed=$((seed + offset)),rate=$rate,kinds=$kinds" \
        "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 1 200); do
        if grep -q '^listening on ' "$dir/$name.out"; then
            eval "${name}_pid=$pid"
            eval "${name}_addr=$(sed -n 's/^listening on //p' "$dir/$name.out")"
            return
        fi
        sleep 0.05
    done
    echo "soak: $name did not start:" >&2; cat "$dir/$name.err" >&2; exit 1
}

start echo 0 "$bin/echo" --addr 127.0.0.1:0 --loops 2
start echo_edge 1 "$bin/echo" --addr 127.0.0.1:0 --loops 2 --edge --reuseport
start udp 2 "$bin/echo" --addr 127.0.0.1:0 --loops 1 --udp
start http 3 "$bin/http" --addr 127.0.0.1:0 --loops 2
start redis 4 "$bin/redis" --addr 127.0.0.1:0 --loops 2
start proxy 5 "$bin/proxy" --addr 127.0.0.1:0 --loops 2 --backend "$echo_addr"
servers="echo echo_edge udp http redis proxy"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
sample() { for s in $servers; do eval "p=\$${s}_pid"; echo "$s $(rss "$p") $(fds "$p")"; done; }

sample >"$dir/idle.txt"
echo "==> load for ${duration}s at rate $rate (kinds $kinds, seed $seed); output in $dir"
port() { echo "${1##*:}"; }
"$load/echo-load" --addr "$echo_addr" --conns 50 --size 4096 --depth 4 --warmup 0 \
    --duration "$duration" --json >"$dir/load_echo.json" 2>"$dir/load_echo.err" & l1=$!
"$load/echo-load" --addr "$echo_edge_addr" --conns 50 --size 64 --depth 16 --warmup 0 \
    --duration "$duration" --json >"$dir/load_echo_edge.json" 2>"$dir/load_echo_edge.err" & l2=$!
"$load/echo-load" --addr "$proxy_addr" --conns 20 --size 16384 --depth 2 --warmup 0 \
    --duration "$duration" --json >"$dir/load_proxy.json" 2>"$dir/load_proxy.err" & l3=$!
"$load/udp-load" --addr "$udp_addr" --sockets 8 --size 512 --depth 8 --warmup 0 \
    --duration "$duration" --json >"$dir/load_udp.json" 2>"$dir/load_udp.err" & l4=$!
wrk -t1 -c50 -d"${duration}s" "http://$http_addr/plaintext" >"$dir/load_http.txt" 2>&1 & l5=$!
(
    end=$((SECONDS + duration)); runs=0
    while [ $SECONDS -lt $end ]; do
        redis-benchmark -p "$(port "$redis_addr")" -c 20 -P 16 -t set,get -n 200000 -q \
            >>"$dir/load_redis.txt" 2>&1 || { echo "redis-benchmark failed" >>"$dir/load_redis.txt"; exit 1; }
        runs=$((runs + 1))
    done
    echo "runs $runs" >>"$dir/load_redis.txt"
) & l6=$!
sleep 10
sample >"$dir/start.txt"

failed=0
for l in $l1 $l2 $l3 $l4 $l5 $l6; do wait "$l" || failed=1; done
sample >"$dir/end.txt"
# A value written through the faults comes back intact.
value="soak-$seed-$(date +%s)"
redis-cli -p "$(port "$redis_addr")" SET soak "$value" >/dev/null
[ "$(redis-cli -p "$(port "$redis_addr")" GET soak)" = "$value" ] || { echo "redis GET mismatch" >&2; failed=1; }

for s in $servers; do eval "kill -TERM \$${s}_pid"; done
for s in $servers; do
    eval "p=\$${s}_pid"
    wait "$p" || { echo "soak: $s exited with status $?" >&2; failed=1; }
done
pids=()

# ---- report ----
num() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$dir/$1"; }
echo_bytes=$(( $(num load_echo.json total_msgs) * 4096 ))
edge_bytes=$(( $(num load_echo_edge.json total_msgs) * 64 ))
proxy_bytes=$(( $(num load_proxy.json total_msgs) * 16384 ))
udp_bytes=$(( $(num load_udp.json total_msgs) * 512 ))
http_reqs=$(awk '/requests in/ {print $1}' "$dir/load_http.txt")
http_bad=$(awk '/Non-2xx/ {print $NF}' "$dir/load_http.txt"); http_bad=${http_bad:-0}
http_errors=$(sed -n 's/.*Socket errors: \(.*\)/\1/p' "$dir/load_http.txt"); http_errors=${http_errors:-none}
redis_runs=$(awk '/^runs/ {print $2}' "$dir/load_redis.txt")
redis_reqs=$(( ${redis_runs:-0} * 400000 ))

mkdir -p "$(dirname "$out")"
{
    echo "Soak: ${duration} s, EVENTIDE_FAULTS=\"seed=$seed+i,rate=$rate,kinds=$kinds\" (server i gets seed $seed+i)"
    echo
    echo "| server | $(echo short_read short_write eintr eagain spurious_ready reset nomem emfile | sed 's/ / | /g') | total |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in $servers; do
        line=$(grep 'faults injected' "$dir/$s.err" | tail -1)
        printf '| %s |' "$s"
        for k in short_read short_write eintr eagain spurious_ready reset nomem emfile; do
            printf ' %s |' "$(echo "$line" | sed -n "s/.*$k=\([0-9]*\).*/\1/p")"
        done
        printf ' %s |\n' "$(echo "$line" | sed -n 's/.*(total \([0-9]*\)).*/\1/p')"
    done
    echo
    echo "| load | verified |"
    echo "|---|---|"
    echo "| echo-load → echo (level, 50 conns × 4 KiB × depth 4) | $echo_bytes bytes echoed, each compared |"
    echo "| echo-load → echo (edge, reuseport, 50 conns × 64 B × depth 16) | $edge_bytes bytes |"
    echo "| echo-load → proxy → echo (20 conns × 16 KiB × depth 2) | $proxy_bytes bytes |"
    echo "| udp-load → UDP echo (8 sockets × 512 B × depth 8) | $udp_bytes bytes ($(num load_udp.json lost) resent as lost) |"
    echo "| wrk → http /plaintext (50 conns) | $http_reqs responses, $http_bad non-2xx, socket errors: $http_errors |"
    echo "| redis-benchmark → redis (SET/GET, 20 conns, pipeline 16) | $redis_reqs requests; SET/GET checked |"
    echo
    echo "| server | RSS idle (KiB) | RSS at 10 s of load | RSS after the load | fds idle | fds at 10 s | fds after |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    paste -d' ' "$dir/idle.txt" "$dir/start.txt" "$dir/end.txt" |
        awk '{printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $5, $8, $3, $6, $9}'
    echo
    if [ $failed = 0 ]; then echo "Every load tool and server finished cleanly."; else echo "FAILED (see $dir)"; fi
} | tee "$out"
exit $failed
