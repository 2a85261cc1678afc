#!/usr/bin/env bash
# The runbooks' commands are real: the audit-log runbook's worked vector, checked with the shell
# command the runbook gives an auditor, yields the hash it documents.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
runbook=$REPO/docs/audit-log-runbook.md
command=$(grep -E "^echo '[0-9a-f]+' \\\\$" -A1 "$runbook" | tr -d '\\\n')
documented=$(sed -n 's/^Its hash: `\([0-9a-f]\{64\}\)`.*/\1/p' "$runbook")
check "the runbook gives a command and a hash" 1 "$([ -n "$command" ] && [ -n "$documented" ] && echo 1)"
check "the runbook's command yields the runbook's hash" "$documented" "$(bash -c "$command" | cut -d' ' -f1)"
check "the library's unit test pins the same hash" 1 \
  "$(grep -c "\"$documented\"" "$REPO/pg_agentidp/core/src/chain.rs")"
summary docs
