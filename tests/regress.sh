#!/usr/bin/env bash
# Runs the pg_regress suite against a cluster on PORT (the extension installed there).
# Each test runs in transactions it rolls back. AGENTIDP_REGRESS_ACCEPT=1 copies results over
# the expected files, for review with git diff.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
port=${1:?usage: regress.sh PORT}
out=$(mktemp -d)
tests=$(cd "$REPO/tests/regress/sql" && ls *.sql | sed 's/\.sql$//' | sort)
status=0
"$($PG_CONFIG --pgxs | xargs dirname)/../test/regress/pg_regress" \
  --host=127.0.0.1 --port="$port" --user=postgres --dbname=agentidp_regress \
  --inputdir="$REPO/tests/regress" --outputdir="$out" --load-extension=pg_agentidp \
  $tests || status=$?
if [ "${AGENTIDP_REGRESS_ACCEPT:-0}" = 1 ]; then
  cp "$out"/results/*.out "$REPO/tests/regress/expected/"
fi
[ -f "$out/regression.diffs" ] && cat "$out/regression.diffs"
exit $status
