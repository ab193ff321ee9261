#!/usr/bin/env bash
# gisgate side by side with nginx, HAProxy and the upstream hit directly,
# using the shared harness (../shared/bench): one interleaved run, bounded
# load runs, loopback only.
#
#   bench/run.sh [harness run.sh options]      e.g. bench/run.sh -r 3 -t "ka1k ka64k hs hsr h2"
#   WORKERS=2 bench/run.sh                       2 workers for every proxy
#   SERVER_CPUS=0 bench/run.sh --client-cpus 1   pinned: servers on CPU 0, load on CPU 1
#   H2UP=0 bench/run.sh                          without gisgate-h2up (upstream.prefer_http2)
#
# Needs (Debian): nginx haproxy wrk nghttp2-client, and the Rust toolchain.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORKERS="${WORKERS:-1}"
KEEPALIVE="${PEER_KEEPALIVE:-64}"
SERVER_CPUS="${SERVER_CPUS:-}"
harness_copy

(cd "$ROOT" && cargo build --release --quiet)
BIN="$ROOT/target/release/gisgate"

"$H/stop-peers.sh" >/dev/null 2>&1 || true
WORKERS="$WORKERS" PEER_KEEPALIVE="$KEEPALIVE" SERVER_CPUS="$SERVER_CPUS" "$H/start-peers.sh"

gisgate_config "$WORKERS" "$KEEPALIVE"
gisgate_config "$WORKERS" "$KEEPALIVE" h2up
"$BIN" check --config "$WORK/gisgate.toml" >/dev/null
"$BIN" check --config "$WORK/gisgate-h2up.toml" >/dev/null
ports_free 19443 19080 19090 19543 19180 19190
TASKSET=()
[ -n "$SERVER_CPUS" ] && TASKSET=(taskset -c "$SERVER_CPUS")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PIDS=()
cleanup() {
  kill -TERM "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
  "$H/stop-peers.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT
# Two gateways, idle while the other is measured: gisgate speaking
# HTTP/1.1 upstream as the peers do, and gisgate-h2up (H2UP=0 leaves it out).
# Each in a session of its own (setsid), as nginx and HAProxy are once they
# daemonize: with the kernel's autogroup scheduling (on by default) a
# process shares its CPU share with its session, and in ours runs the load
# generator (bench/README.md, "Equal settings: a session of its own").
"${TASKSET[@]}" setsid "$BIN" run --config "$WORK/gisgate.toml" 2> "$WORK/gisgate.log" &
PIDS+=($!)
echo "$!" > "$WORK/gisgate.pid"
wait_ready "$!" "$WORK/gisgate.log"
if [ "${H2UP:-1}" != 0 ]; then
  "${TASKSET[@]}" setsid "$BIN" run --config "$WORK/gisgate-h2up.toml" 2> "$WORK/gisgate-h2up.log" &
  PIDS+=($!)
  wait_ready "$!" "$WORK/gisgate-h2up.log" 19190
fi

TARGETS=(direct=https://127.0.0.1:16443 nginx=https://127.0.0.1:17443)
ss -Hltn "sport = :18443" | grep -q . && TARGETS+=(haproxy=https://127.0.0.1:18443)
TARGETS+=(gisgate=https://127.0.0.1:19443)
[ "${H2UP:-1}" != 0 ] && TARGETS+=(gisgate-h2up=https://127.0.0.1:19543)
OUT="${OUT:-$WORK/results/$(date +%Y%m%d-%H%M%S)-w$WORKERS}" \
  "$H/run.sh" --ref nginx "$@" "${TARGETS[@]}"
