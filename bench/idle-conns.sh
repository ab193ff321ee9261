#!/usr/bin/env bash
# Memory of idle TLS keep-alive connections: RSS of gisgate and of the nginx
# peer before and after N (default 10,000) idle connections, each having
# made one HTTP/1.1 request. Loopback only, bounded in count and time.
#
#   bench/idle-conns.sh [N]
#   GISGATE_BIN=/path/to/gisgate bench/idle-conns.sh   # measure another build
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N="${1:-10000}"
HOLD="${HOLD:-8}"
# sampled SETTLE s after the last connection opened: gisgate sets an
# HTTP/1.1 connection aside after 1 s idle (README), nginx at once
SETTLE="${SETTLE:-5}"
harness_copy
(cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example idle_conns)
ulimit -n "$(ulimit -Hn)"   # each process holds N descriptors
"$H/stop-peers.sh" >/dev/null 2>&1 || true
PEERS=nginx "$H/start-peers.sh" >/dev/null
gisgate_config 1 64
ports_free
"${GISGATE_BIN:-$ROOT/target/release/gisgate}" run --config "$WORK/gisgate.toml" 2> "$WORK/gisgate.log" &
GPID=$!
trap 'kill -TERM $GPID 2>/dev/null; wait $GPID 2>/dev/null; "$H/stop-peers.sh" >/dev/null 2>&1' EXIT
wait_ready "$GPID" "$WORK/gisgate.log"

rss_kib() { # total RSS of the processes listening on a port
  local pids; pids=$(ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
  local total=0; for p in $pids; do total=$((total + $(awk '/VmRSS/{print $2}' /proc/$p/status))); done; echo $total
}
measure() { # name port
  local before after
  before=$(rss_kib "$2")
  "$ROOT/target/release/examples/idle_conns" "127.0.0.1:$2" "$N" "$HOLD" "$H/pki/ca.crt" > "$WORK/idle-$1.txt" &
  local client=$!
  # wait until the client reports all connections open, then sample
  for _ in $(seq 1 600); do grep -q '^open' "$WORK/idle-$1.txt" 2>/dev/null && break; sleep 0.1; done
  sleep "$SETTLE"
  after=$(rss_kib "$2")
  wait $client
  printf '%-8s idle RSS %6d KiB, with %d idle TLS connections %7d KiB: +%d KiB (%.2f KiB/conn)\n' \
    "$1" "$before" "$N" "$after" $((after - before)) "$(echo "($after - $before) / $N" | bc -l)"
}
measure gisgate 19443
measure nginx 17443
