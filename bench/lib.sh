# Shared by run.sh and idle-conns.sh: start gisgate only on free ports, and
# wait until *this* gisgate is ready.

# A gateway from an earlier run may still be draining: a new one could not
# bind, and the old one would answer the readiness check (or be measured).
ports_free() {
  local port
  for port in 19443 19080 19090; do
    for _ in $(seq 1 50); do ss -Hltn "sport = :$port" | grep -q . || break; sleep 0.2; done
    if ss -Hltn "sport = :$port" | grep -q .; then
      echo "port $port is still in use (an earlier gisgate?): stop it first" >&2
      return 1
    fi
  done
}

# wait_ready PID LOG
wait_ready() {
  for _ in $(seq 1 50); do
    kill -0 "$1" 2>/dev/null || { echo "gisgate exited, see $2" >&2; return 1; }
    curl -sf -o /dev/null http://127.0.0.1:19090/readyz && return 0
    sleep 0.2
  done
  echo "gisgate not ready after 10 s, see $2" >&2
  return 1
}
