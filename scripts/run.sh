#!/usr/bin/env bash
# The keygate rig, in the foreground (`make run` builds everything first, then runs this):
#
#   keyservice     http://127.0.0.1:8081   SQLite at .run/keyservice.db (or $DATABASE_URL)
#   echo-upstream  http://127.0.0.1:8080
#   dev-idp        http://127.0.0.1:8082   the development identity provider (DEVELOPMENT ONLY)
#   Envoy          http://127.0.0.1:10000  admin http://127.0.0.1:9901, config envoy/envoy.yaml
#
# The API keys page is http://127.0.0.1:10000/keys: sign in with the development identity
# provider (a form, no password: it exists only in this rig), create, copy and revoke keys.
#
# Environment:
#   JWT_SECRET              signing secret shared by keyservice and the filter
#                           (development default: dev-secret-change-me-0123456789abcdef)
#   KEYSERVICE_ADMIN_TOKEN  bearer token of keyservice's management API
#                           (development default: dev-admin-token)
#   KEYSERVICE_CACHE_ACTIVE_SECONDS  how long the edge may cache an "active" answer (keyservice's
#                           default, a day: Envoy follows the revocation feed, so a revocation
#                           reaches it in about a second anyway)
#   DATABASE_URL            keyservice's database (default: sqlite://$KEYGATE_RUN_DIR/keyservice.db;
#                           postgres://USER:PASSWORD@HOST:PORT/DB for PostgreSQL)
#   ENVOY_BIN, KEYSERVICE_BIN, ECHO_UPSTREAM_BIN, DEV_IDP_BIN   binaries (defaults:
#                           .venv/bin/envoy, target/debug/*)
#   KEYGATE_RUN_DIR         where the database and the logs go (default: .run)
#
# keyservice verifies the callers of /v1/keys itself: API keys with keys:write
# (--api-key-callers) and the dev IdP's sessions (--session-issuer, against its JWKS). Once
# keyservice is up, a key with the keys:write scope is issued with the CLI into
# $KEYGATE_RUN_DIR/keys-write.key, for managing keys over the edge with curl.
#
# Waits until all three answer, prints a demo to paste (scripts/demo.sh runs it), then waits.
# Ctrl-C or SIGTERM stops everything it started (exit 0); if one of them dies, the others are
# stopped and it exits 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

ENVOY_BIN=${ENVOY_BIN:-$ROOT/.venv/bin/envoy}
KEYSERVICE_BIN=${KEYSERVICE_BIN:-$ROOT/target/debug/keyservice}
ECHO_UPSTREAM_BIN=${ECHO_UPSTREAM_BIN:-$ROOT/target/debug/echo-upstream}
DEV_IDP_BIN=${DEV_IDP_BIN:-$ROOT/target/debug/dev-idp}
KEYGATE_WASM=$ROOT/target/wasm32-wasip1/release/keygate.wasm # the path envoy/envoy.yaml names
RUN_DIR=${KEYGATE_RUN_DIR:-$ROOT/.run}

KEYSERVICE_PORT=8081
ECHO_PORT=8080
DEV_IDP_PORT=8082
ENVOY_PORT=10000
ENVOY_ADMIN_PORT=9901
READY_TIMEOUT_SECONDS=60

log() { printf 'run.sh: %s\n' "$*"; }
warn() { printf 'run.sh: WARNING: %s\n' "$*" >&2; }
die() {
  printf 'run.sh: error: %s\n' "$*" >&2
  exit 1
}

# --- preflight -------------------------------------------------------------------------------

for bin in "$ENVOY_BIN" "$KEYSERVICE_BIN" "$ECHO_UPSTREAM_BIN" "$DEV_IDP_BIN" "$KEYGATE_WASM"; do
  [[ -e $bin ]] || die "$bin is missing: run 'make run' (or 'make tools build' first)"
done
command -v python3 >/dev/null || die "python3 is needed (port checks and the demo)"
command -v curl >/dev/null || die "curl is needed (readiness checks and the demo)"

if [[ -z ${JWT_SECRET:-} ]]; then
  JWT_SECRET=dev-secret-change-me-0123456789abcdef
  warn "JWT_SECRET is not set: using the development default '$JWT_SECRET'"
fi
if [[ -z ${KEYSERVICE_ADMIN_TOKEN:-} ]]; then
  KEYSERVICE_ADMIN_TOKEN=dev-admin-token
  warn "KEYSERVICE_ADMIN_TOKEN is not set: using the development default '$KEYSERVICE_ADMIN_TOKEN'"
fi
export JWT_SECRET KEYSERVICE_ADMIN_TOKEN

# A port is free when we can bind it the way the servers do (SO_REUSEADDR: a TIME_WAIT leftover
# does not count, a listener does).
port_is_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}
for port in $KEYSERVICE_PORT $ECHO_PORT $DEV_IDP_PORT $ENVOY_PORT $ENVOY_ADMIN_PORT; do
  port_is_free "$port" || die "port 127.0.0.1:$port is already in use (another 'make run'?); stop whatever holds it and retry"
done

mkdir -p "$RUN_DIR"

# --- children ----------------------------------------------------------------------------------

pids=()
names=()

# Running, as opposed to gone or a zombie waiting to be reaped.
is_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

stop_all() {
  local pid deadline=$((SECONDS + 10))
  ((${#pids[@]})) || return 0
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    while is_running "$pid"; do
      if ((SECONDS >= deadline)); then kill -KILL "$pid" 2>/dev/null || true; fi
      sleep 0.1
    done
  done
  wait 2>/dev/null || true
  pids=()
  log "stopped"
}
trap stop_all EXIT
trap 'log "stopping (SIGINT)"; exit 0' INT
trap 'log "stopping (SIGTERM)"; exit 0' TERM

start() {
  local name=$1
  shift
  "$@" >"$RUN_DIR/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
  log "started $name (pid $!), log: $RUN_DIR/$name.log"
}

show_log_tail() {
  echo "---- last lines of $RUN_DIR/$1.log ----" >&2
  tail -n 30 "$RUN_DIR/$1.log" >&2 || true
  echo "----" >&2
}

check_children() {
  local i
  for i in "${!pids[@]}"; do
    if ! is_running "${pids[$i]}"; then
      show_log_tail "${names[$i]}"
      die "${names[$i]} (pid ${pids[$i]}) exited during startup"
    fi
  done
}

DATABASE=${DATABASE_URL:-sqlite://$RUN_DIR/keyservice.db}
# The issuer and authorized party are the strings envoy/envoy.yaml's dev-idp provider expects.
DEV_IDP_URL=http://127.0.0.1:$DEV_IDP_PORT
PAGE_ORIGIN=http://127.0.0.1:$ENVOY_PORT
start dev-idp "$DEV_IDP_BIN" --listen "127.0.0.1:$DEV_IDP_PORT" --issuer "$DEV_IDP_URL" \
  --authorized-party "$PAGE_ORIGIN"
start keyservice "$KEYSERVICE_BIN" serve --listen "127.0.0.1:$KEYSERVICE_PORT" \
  --database "$DATABASE" --api-key-callers \
  --session-issuer "$DEV_IDP_URL" --session-jwks-url "$DEV_IDP_URL/.well-known/jwks.json" \
  --session-authorized-party "$PAGE_ORIGIN" --scopes keyservice/scopes.example.json \
  --sign-in-url /sign-in --sign-out-url /sign-out
start echo-upstream "$ECHO_UPSTREAM_BIN" --listen "127.0.0.1:$ECHO_PORT"
# --use-dynamic-base-id: other Envoys (the integration tests) may be running at the same time.
start envoy "$ENVOY_BIN" -c envoy/envoy.yaml --use-dynamic-base-id \
  -l info --component-log-level wasm:debug

# --- readiness ---------------------------------------------------------------------------------

accepts() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
wait_until() {
  local what=$1
  shift
  until "$@" 2>/dev/null; do
    check_children
    if ((SECONDS >= deadline)); then
      for name in "${names[@]}"; do show_log_tail "$name"; done
      die "$what not ready after ${READY_TIMEOUT_SECONDS}s"
    fi
    sleep 0.2
  done
}
wait_until "keyservice" accepts $KEYSERVICE_PORT
# The bootstrap key for /v1/keys over the edge, issued with the CLI (it never leaves this file).
(
  umask 077
  "$KEYSERVICE_BIN" --database "$DATABASE" issue --user alice --org acme --name rig-keys-write \
    --scope keys:write >"$RUN_DIR/keys-write.key" 2>>"$RUN_DIR/keyservice.log"
) || die "could not issue the keys:write bootstrap key (see $RUN_DIR/keyservice.log)"
wait_until "echo-upstream" accepts $ECHO_PORT
wait_until "dev-idp" accepts $DEV_IDP_PORT
wait_until "Envoy" curl -fsS -o /dev/null "http://127.0.0.1:$ENVOY_ADMIN_PORT/ready"
check_children

cat <<EOF

keygate rig is ready
  API keys page  http://127.0.0.1:$ENVOY_PORT/keys   (sign in as alice, bob or carol: development only)
  Envoy          http://127.0.0.1:$ENVOY_PORT   (admin http://127.0.0.1:$ENVOY_ADMIN_PORT)
  keyservice     http://127.0.0.1:$KEYSERVICE_PORT   database $(printf '%s' "$DATABASE" | sed -E 's#//[^@/]*@#//***@#')
  keys:write key $RUN_DIR/keys-write.key (alice@acme: manages acme's keys over the edge)
  echo-upstream  http://127.0.0.1:$ECHO_PORT
  dev-idp        $DEV_IDP_URL   (DEVELOPMENT ONLY identity provider)
  logs           $RUN_DIR/{envoy,keyservice,echo-upstream,dev-idp}.log

Try it: run scripts/demo.sh, or paste:

EOF
sed -n '/^# demo:begin$/,/^# demo:end$/{/^# demo:/d;p}' scripts/demo.sh
printf '\nCtrl-C stops everything.\n'

# --- wait --------------------------------------------------------------------------------------

dead=
status=0
wait -n -p dead "${pids[@]}" || status=$?
for i in "${!pids[@]}"; do
  if [[ ${pids[$i]} == "$dead" ]]; then
    show_log_tail "${names[$i]}"
    warn "${names[$i]} (pid $dead) exited with status $status; stopping the others"
  fi
done
exit 1
