#!/usr/bin/env bash
# A local Citus cluster on this machine: a coordinator and two workers, each a PostgreSQL 15
# cluster of its own with Citus and pg_agentidp preloaded, and a database `agentidp` on each with
# both extensions, the audit log distributed by chain (docs/scaling.md).
# Usage: bash tests/citus_up.sh [start|stop]    (start by default; the clusters keep running)
# Ports: AGENTIDP_CITUS_PORT (coordinator, 5470), AGENTIDP_CITUS_WORKER_PORTS ("5471 5472").
# AGENTIDP_CITUS_DISTRIBUTE=0 leaves the log local, to be distributed later (it may hold events
# by then) with SELECT agentidp.agentidp_distribute().
set -euo pipefail
. "$(dirname "$0")/lib.sh"
PORT_COORD=${AGENTIDP_CITUS_PORT:-5470}
read -r -a worker_ports <<< "${AGENTIDP_CITUS_WORKER_PORTS:-5471 5472}"
db=agentidp
# Cluster names under $RUN_DIR: citus-coord, citus-w1, citus-w2.
workers=()
for i in "${!worker_ports[@]}"; do workers+=("citus-w$((i + 1))"); done

stop_all() {
  local n
  for n in citus-coord "${workers[@]}"; do stop_cluster "$n"; done
}

case "${1:-start}" in
  stop)
    stop_all
    echo "Citus cluster stopped (coordinator and ${#workers[@]} workers)"
    exit 0 ;;
  start) ;;
  *) echo "usage: bash tests/citus_up.sh [start|stop]" >&2; exit 2 ;;
esac

bash "$REPO/tests/setup.sh"   # builds and installs Citus when it is missing
if [ ! -f "$("$PG_CONFIG" --sharedir)/extension/pg_agentidp.control" ]; then
  log "building and installing the extension"
  install_extension
fi

# Citus must come first in shared_preload_libraries. wal_level = logical: shard moves and splits
# catch up by logical replication. Per-org chains, and change data capture so that Citus copies
# shards under a replication origin and their rows keep their chain: a distributed log needs both
# on every node (docs/scaling.md). AGENTIDP_CITUS_CONF adds settings, one per line.
conf=("shared_preload_libraries = 'citus, pg_agentidp'" "wal_level = logical"
      "agentidp.chain_scope = 'org'" "citus.enable_change_data_capture = on")
# Shard splits decode the WAL with Citus's own output plugin, which PostgreSQL builds that allow
# only approved plugins (Debian's 15.20 has output_plugin_libraries) must approve.
if "$PG_BIN/postgres" --describe-config 2>/dev/null | grep '^output_plugin_libraries' > /dev/null; then
  conf+=("output_plugin_libraries = 'pgoutput, test_decoding, citus'")
fi
while IFS= read -r line; do [ -n "$line" ] && conf+=("$line"); done <<< "${AGENTIDP_CITUS_CONF:-}"
trap 'stop_all' EXIT   # a failed start leaves nothing running
start_node() {   # start_node NAME PORT
  log "starting $1 on port $2"
  start_cluster "$1" "$2" "${conf[@]}"
  psql_at "$2" -d postgres -c "CREATE DATABASE $db"
  psql_at "$2" -d "$db" -c "CREATE EXTENSION citus" -c "CREATE EXTENSION pg_agentidp"
}
start_node citus-coord "$PORT_COORD"
for i in "${!workers[@]}"; do start_node "${workers[$i]}" "${worker_ports[$i]}"; done

log "adding the workers to the coordinator"
psql_at "$PORT_COORD" -d "$db" -c "SELECT citus_set_coordinator_host('127.0.0.1', $PORT_COORD)" >/dev/null
for p in "${worker_ports[@]}"; do
  psql_at "$PORT_COORD" -d "$db" -c "SELECT citus_add_node('127.0.0.1', $p)" >/dev/null
done
psql_at "$PORT_COORD" -d "$db" -c "SELECT * FROM citus_get_active_worker_nodes() ORDER BY 2"
if [ "${AGENTIDP_CITUS_DISTRIBUTE:-1}" = 1 ]; then
  log "distributing the audit log"
  psql_at "$PORT_COORD" -d "$db" -c "SELECT agentidp.agentidp_distribute()" >/dev/null
fi
trap - EXIT

cat <<MSG

  Coordinator: psql -h 127.0.0.1 -p $PORT_COORD -U postgres $db
  Workers:     psql -h 127.0.0.1 -p ${worker_ports[0]} -U postgres $db   (the others: ports ${worker_ports[*]:1})
  Sidecar:     DATABASE_URL='postgresql://postgres@127.0.0.1:$PORT_COORD/$db?sslmode=disable'
               (the sidecar talks to the coordinator only)
  Logs:        $RUN_DIR/citus-coord.log, $RUN_DIR/citus-w<N>.log
  Stop:        bash tests/citus_up.sh stop

MSG
