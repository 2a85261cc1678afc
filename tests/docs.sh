#!/usr/bin/env bash
# The runbooks' commands are real: the audit-log runbook's worked vector, checked with the shell
# command the runbook gives an auditor, yields the hash it documents; and its worked example of a
# signed checkpoint prints what the library computes, and its script, run as an auditor would,
# prints what the runbook shows and rejects a changed checkpoint.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
runbook=$REPO/docs/audit-log-runbook.md
command=$(grep -E "^echo '[0-9a-f]+' \\\\$" -A1 "$runbook" | tr -d '\\\n')
documented=$(sed -n 's/^Its hash: `\([0-9a-f]\{64\}\)`.*/\1/p' "$runbook")
check "the runbook gives a command and a hash" 1 "$([ -n "$command" ] && [ -n "$documented" ] && echo 1)"
check "the runbook's command yields the runbook's hash" "$documented" "$(bash -c "$command" | cut -d' ' -f1)"
check "the library's unit test pins the same hash" 1 \
  "$(grep -c "\"$documented\"" "$REPO/pg_agentidp/core/src/chain.rs")"

# block REGEX: the contents of the first fenced block after the first line matching REGEX.
block() {
  awk -v re="$1" '
    !state && $0 ~ re { state = 1; next }
    state == 1 && /^```/ { state = 2; next }
    state == 2 && /^```/ { exit }
    state == 2 { print }' "$runbook"
}
printed=$(block 'example worked_example` computes every value')
script=$(block '^Check them with no code of ours')
script_prints=$(block '^The script prints:')
check "the worked example shows the library's output, a script and what it prints" 1 \
  "$([ -n "$printed" ] && [ -n "$script" ] && [ -n "$script_prints" ] && echo 1)"

if program=$(cd "$REPO" && cargo run -q -p agentidp-core --example worked_example); then
  check "the worked example program runs" 0 0
else
  check "the worked example program runs" 0 $?
fi
check "the runbook shows the worked example program's output" "$program" "$printed"

# run SCRIPT: runs it as an auditor would, in an empty directory; its output, then its status.
run() {
  local dir status
  dir=$(mktemp -d)
  (cd "$dir" && bash -c "$1" 2>&1)
  status=$?
  rm -rf "$dir"
  echo "exit $status"
}
ran=$(run "$script")
check "the runbook's script prints what the runbook shows, and succeeds" \
  "$script_prints"$'\n'"exit 0" "$ran"
# Each value the script computes from standard tools must be one the library printed, so neither
# can drift from the other without this failing.
values=$(grep -E '^[a-z_]+(\[[0-9,]+\])?: ' <<<"$ran")
check "the script computes at least 15 values" 1 "$([ "$(wc -l <<<"$values")" -ge 15 ] && echo 1)"
check "every value the script computes is the library's" "" \
  "$(grep -vxF -f <(printf '%s\n' "$program") <<<"$values")"
check "the script checks the note the library signed" \
  "$(sed -n '/^note:$/,$p' <<<"$program" | sed 1d)" \
  "$(sed -n "/^cat > note <<'EOF'$/,/^EOF$/p" <<<"$script" | sed '1d;$d')"
# The same script over a checkpoint whose size was changed after signing must fail.
changed=$(sed "/^cat > note <<'EOF'$/,/^EOF$/s/^3$/4/" <<<"$script")
check "the changed script differs in the note only" 1 "$(diff <(echo "$script") <(echo "$changed") | grep -c '^> 4$')"
check "the runbook's script rejects a checkpoint changed after signing" \
  "Signature Verification Failure"$'\n'"exit 1" "$(run "$changed" | tail -n 2)"
summary docs
