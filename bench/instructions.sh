#!/usr/bin/env bash
# User-space instructions per keep-alive request (1 KB JSON, HTTP/1.1 over
# TLS 1.3), counted by callgrind: unlike req/s on a shared VM, the count
# repeats (nginx within 0.1%, gisgate within ~2%: its timers fire by wall
# clock), so two builds compare without interleaving. Each proxy serves N1
# and then N2 requests (h2load --h1, one connection) under valgrind;
# (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up, handshakes and shutdown.
# The kernel's share (most of a request's cost, see README.md) is not
# counted. Loopback only; each run is bounded by its request count.
#
#   bench/instructions.sh                          gisgate and the nginx peer
#   bench/instructions.sh gisgate                  gisgate only
#   GISGATE_BIN=/path/to/gisgate bench/instructions.sh gisgate   another build
#   N1=1000 N2=5000 CONNS=1 bench/instructions.sh  request counts, connections (defaults)
#
# Needs (Debian): valgrind nginx nghttp2-client (h2load), and the Rust toolchain.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N1="${N1:-1000}"
N2="${N2:-5000}"
CONNS="${CONNS:-1}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gisgate nginx)
harness_copy
mkdir -p "$WORK/callgrind"
(cd "$ROOT" && cargo build --release --quiet)
BIN="${GISGATE_BIN:-$ROOT/target/release/gisgate}"

"$H/stop-peers.sh" >/dev/null 2>&1 || true
# The nginx peer is started only to render its config; it then runs in the
# foreground, one process, under valgrind.
PEERS=nginx "$H/start-peers.sh" >/dev/null
kill -QUIT "$(cat "$RUN_DIR/nginx-peer/nginx.pid")"
sed -e 's/^daemon on;/daemon off;\nmaster_process off;/' \
  "$RUN_DIR/nginx-peer/nginx.conf" > "$RUN_DIR/nginx-peer/nginx.fg.conf"
gisgate_config 1 64
trap '"$H/stop-peers.sh" >/dev/null 2>&1' EXIT

port_of() { case "$1" in gisgate) echo 19443 ;; nginx) echo 17443 ;; esac; }

# count TARGET N: total instructions of TARGET's process serving N requests
count() {
  local out="$WORK/callgrind/$1.$2" port pid
  port=$(port_of "$1")
  for _ in $(seq 1 100); do ss -Hltn "sport = :$port" | grep -q . || break; sleep 0.2; done
  case "$1" in
    gisgate)
      ports_free
      valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" run --config "$WORK/gisgate.toml" 2> "$out.log" & ;;
    nginx)
      valgrind --tool=callgrind --callgrind-out-file="$out" \
        nginx -p "$RUN_DIR/nginx-peer" -c "$RUN_DIR/nginx-peer/nginx.fg.conf" 2> "$out.log" & ;;
  esac
  pid=$!
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { echo "$1 exited, see $out.log" >&2; return 1; }
    curl -sk -o /dev/null "https://127.0.0.1:$port/" && break
    sleep 0.2
  done
  h2load --h1 -n "$2" -c "$CONNS" "https://127.0.0.1:$port/arcgis/rest/info?f=json" \
    | grep -q "$2 succeeded" || { echo "$1: not all $2 requests succeeded" >&2; return 1; }
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/{print $2; exit}' "$out"
}

printf '%-8s %14s %14s %12s\n' target "Ir (N1=$N1)" "Ir (N2=$N2)" "Ir/request"
for t in "${TARGETS[@]}"; do
  a=$(count "$t" "$N1"); b=$(count "$t" "$N2")
  printf '%-8s %14d %14d %12d\n' "$t" "$a" "$b" $(((b - a) / (N2 - N1)))
done
echo "callgrind files: $WORK/callgrind/ (callgrind_annotate FILE)"
