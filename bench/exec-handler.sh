#!/usr/bin/env bash
# Exec'd-handler benchmark for oxinetd alone (the peer comparison is the
# job of the full benchmark): connections/s and latency at concurrency
# 1, 8 and 64 against bench/echo1.c, supervisor CPU per connection (its own
# utime+stime from /proc over the connections served), and idle RSS.
# Usage: bench/exec-handler.sh [SECONDS_PER_ROUND] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
work=$(mktemp -d /tmp/oxinetd-bench.XXXXXX)
chmod 755 "$work"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

gcc -O2 -o "$work/echo1" bench/echo1.c
cargo build -q --release
cargo build -q --release --manifest-path bench/loadgen/Cargo.toml
loadgen=bench/loadgen/target/release/oxinetd-loadgen
user=""
[ "$(id -u)" = 0 ] && user='user = "nobody"'
cat > "$work/bench.toml" <<CONF
[[service]]
name = "echo1"
listen = "127.0.0.1:0"
server = "$work/echo1"
stderr = "null"
$user
CONF
./target/release/oxinetd -f "$work/bench.toml" --log stderr 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q ' ready ' "$work/log" 2>/dev/null && break; sleep 0.05; done
addr=$(grep -o 'addr=[^ ]*' "$work/log" | head -1 | cut -d= -f2)
rss_kib=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
clk=$(getconf CLK_TCK)
cpu() { awk -v c="$clk" '{ printf "%d", ($14 + $15) * 1000000 / c }' /proc/$pid/stat; }

echo "oxinetd exec'd handler, $(nproc) cores, $(uname -r), $(date -u +%F)"
echo "idle RSS: ${rss_kib} KiB"
for c in 1 8 64; do
    for r in $(seq "$rounds"); do
        before=$(cpu)
        line=$($loadgen "$addr" "$c" "$secs")
        after=$(cpu)
        conns=$(sed 's/.*conns=\([0-9]*\).*/\1/' <<<"$line")
        echo "c=$c round=$r $line sup_cpu_us_per_conn=$(( (after - before) / (conns > 0 ? conns : 1) ))"
    done
done
