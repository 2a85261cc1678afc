#!/usr/bin/env bash
# Checks alerts.yml: promtool's syntax/PromQL check, the promtool unit tests in tests/alerts/,
# that every alert has a test where it fires and one where it stays quiet, and that every
# runbook_url points at a file and heading that exist. Needs only promtool (Debian: prometheus).
# Prints "alerts: N passed, M failed" last; exits non-zero on any failure.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() {
  echo "alerts: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

PROMTOOL=$(command -v promtool || echo /usr/bin/promtool)
if [ ! -x "$PROMTOOL" ]; then
  fail "promtool not found (apt-get install -y prometheus, or run tests/setup.sh)"
  finish
fi

# 1. Syntax, PromQL and templates of the rule file.
if out=$("$PROMTOOL" check rules alerts.yml 2>&1); then
  ok "promtool check rules alerts.yml ($(grep -o '[0-9]* rules found' <<<"$out"))"
else
  echo "$out"
  fail "promtool check rules alerts.yml"
fi

# 2. Unit tests, one result per file.
shopt -s nullglob
tests=(tests/alerts/*.yml)
[ ${#tests[@]} -gt 0 ] || fail "no unit tests in tests/alerts/"
for t in "${tests[@]}"; do
  if out=$("$PROMTOOL" test rules "$t" 2>&1); then
    ok "promtool test rules $t"
  else
    echo "$out"
    fail "promtool test rules $t"
  fi
done

# 3. Coverage: every alert is expected to fire in some test and to stay quiet in another.
#    An alert_rule_test case is "quiet" when its exp_alerts is `[]`, "fires" otherwise (a list or
#    an alias of one).
alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' alerts.yml)
cases=$(awk '
  /^ *(- )?alertname:/ { sub(/^ *(- )?alertname: */, ""); name = $0; next }
  /^ *exp_alerts:/ && name != "" {
    print name, ($0 ~ /exp_alerts: *\[\] *$/ ? "quiet" : "fires"); name = ""
  }' "${tests[@]}")
for a in $alerts; do
  for kind in fires quiet; do
    if grep -qx "$a $kind" <<<"$cases"; then
      ok "$a: a test where it ${kind/quiet/stays quiet}"
    else
      fail "$a: no test where it ${kind/quiet/stays quiet} (tests/alerts/*.yml)"
    fi
  done
done
for a in $(awk '{print $1}' <<<"$cases" | sort -u); do
  grep -qx "$a" <<<"$alerts" || fail "tests/alerts/ tests $a, which alerts.yml does not define"
done

# 4. Every alert has a runbook_url whose file exists and whose anchor is a heading there
#    (GitHub's slug: lower case, punctuation other than - and _ dropped, spaces to -).
prefix=https://github.com/agentidp/pg_agentidp/blob/main/
n_alerts=$(grep -c '^ *- alert:' alerts.yml)
n_urls=$(grep -c '^ *runbook_url:' alerts.yml)
if [ "$n_alerts" -eq "$n_urls" ]; then
  ok "all $n_alerts alerts have a runbook_url"
else
  fail "$n_alerts alerts but $n_urls runbook_url annotations"
fi
for url in $(sed -n 's/^ *runbook_url: *//p' alerts.yml | sort -u); do
  path=${url#"$prefix"}
  file=${path%%#*}
  anchor=${path#*#}
  if [ "$path" = "$url" ] || [ "$file" = "$path" ]; then
    fail "runbook_url $url is not $prefix<file>#<anchor>"
  elif [ ! -f "$file" ]; then
    fail "runbook_url $url: no file $file"
  elif sed -n 's/^#\{1,6\} \(.*\)$/\1/p' "$file" | tr 'A-Z' 'a-z' \
      | sed 's/[^a-z0-9 _-]//g; s/ /-/g' | grep -qx -- "$anchor"; then
    ok "runbook_url anchor $file#$anchor"
  else
    fail "runbook_url $url: no heading in $file makes the anchor #$anchor"
  fi
done

finish
