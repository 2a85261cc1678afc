# Shared by the harness scripts: paths, and a throwaway PostgreSQL cluster run as `postgres`
# (initdb refuses root). Source it; it defines functions only.

PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Under /var/tmp, not /tmp: the postgres user must own the clusters' parent directory.
RUN_DIR=${AGENTIDP_RUN_DIR:-/var/tmp/agentidp}

log() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

as_postgres() { runuser -u postgres -- "$@"; }

# start_cluster NAME PORT [postgresql.conf lines...]: a fresh cluster in $RUN_DIR/NAME.
start_cluster() {
  local name=$1 port=$2; shift 2
  local dir=$RUN_DIR/$name pid
  stop_cluster "$name"
  # Another cluster of ours still running on this port (from up.sh, a benchmark, an interrupted
  # run) would make the start fail: stop it first.
  for pid in "$RUN_DIR"/*/postmaster.pid; do
    if [ -f "$pid" ] && [ "$(sed -n 4p "$pid")" = "$port" ]; then
      stop_cluster "$(basename "$(dirname "$pid")")"
    fi
  done
  mkdir -p "$RUN_DIR" && chown postgres "$RUN_DIR"
  rm -rf "$dir"
  as_postgres "$PG_BIN/initdb" -D "$dir" -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  {
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$RUN_DIR'"
    printf '%s\n' "$@"
  } >> "$dir/postgresql.conf"
  as_postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$dir.log" -w start >/dev/null
}

stop_cluster() {
  local dir=$RUN_DIR/$1
  if [ -f "$dir/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# psql_at PORT [psql args...]: as the superuser, stopping at the first error.
psql_at() {
  local port=$1; shift
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# cargo pgrx installs this build's script and the upgrade scripts (pg_agentidp--A--B.sql). The
# frozen install scripts of earlier releases go beside them, so that a release can still be
# created as it shipped: the upgrade test starts from one.
install_extension() {
  (cd "$REPO/pg_agentidp" && cargo pgrx install --release --pg-config "$PG_CONFIG") &&
    install -m 644 "$REPO"/sql/pg_agentidp--[0-9]*.[0-9]*.[0-9]*.sql "$("$PG_CONFIG" --sharedir)/extension/"
}

# check NAME EXPECTED ACTUAL: one assertion; failures are counted, not fatal, so a run reports all.
PASSED=0
FAILED=0
check() {
  if [ "$2" = "$3" ]; then
    PASSED=$((PASSED + 1)); echo "ok   $1"
  else
    FAILED=$((FAILED + 1)); echo "FAIL $1: expected [$2], got [$3]"
  fi
}

# summary SUITE: the closing line, and the exit status.
summary() {
  echo "$1: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# For suites that start processes of their own (their pids in the array `pids`) beside a cluster
# named $name, and keep their files in $work.

# fatal MESSAGE: a step the rest of suite $name depends on failed; count it, close the suite, stop.
fatal() {
  FAILED=$((FAILED + 1)); echo "FAIL $1"
  summary "$name"
  exit 1
}

# wait_for SECONDS COMMAND...: retries COMMAND every half second until it succeeds or time is up.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# end_run LOG...: the suite's exit trap. After a failure, the last lines of each LOG in $work;
# then its processes and cluster stopped and $work removed.
end_run() {
  local f pid
  if [ "$FAILED" -gt 0 ]; then
    for f in "$@"; do
      [ -f "$work/$f" ] && { echo "-- last lines of $f"; tail -n 20 "$work/$f"; }
    done
  fi
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  stop_cluster "$name"
  rm -rf "$work"
}

# start_prometheus PORT SIDECAR_PORT: a Prometheus on PORT scraping the sidecar every second, with
# the repository's alerts.yml as its rule file; its data, config and log in $work.
start_prometheus() {
  cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $REPO/alerts.yml
scrape_configs:
  - job_name: agentidp-sidecar
    static_configs:
      - targets: ['127.0.0.1:$2']
YAML
  "$(command -v prometheus || echo /usr/bin/prometheus)" --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/tsdb" --web.listen-address="127.0.0.1:$1" --log.level=warn \
    >"$work/prometheus.log" 2>&1 &
  pids+=($!)
}
