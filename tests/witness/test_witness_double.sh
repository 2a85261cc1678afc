#!/usr/bin/env bash
# The witness double (tests/witness/witness_double.py) against C2SP tlog-witness, with fixtures
# from agentidp_core (pg_agentidp/core/examples/witness_fixtures.rs): its proof verifier against
# every proof of the log's trees up to 20 leaves, its keys and cosignatures against
# agentidp_core::witness byte for byte, then each add-checkpoint outcome over HTTP, a restart
# included. One line per check; exits non-zero on any failure.
#
#   bash tests/witness/test_witness_double.sh [PORT]     (default 3941; needs python3 with
#                                                        `cryptography`, curl, cargo)
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$REPO"

name=witness_double
port=${1:-3941}
python=${PYTHON:-python3}
double=${WITNESS_DOUBLE:-$REPO/tests/witness/witness_double.py}
work=$(mktemp -d)
fx=$work/fixtures
state=$work/state
pids=()
trap 'end_run double.log' EXIT

fixtures() { cargo run -q -p agentidp-core --example witness_fixtures -- "$@"; }

cargo build -q -p agentidp-core --example witness_fixtures || fatal "building the fixtures"
fixtures gen "$fx" || fatal "generating the fixtures"
witness_name=$(cat "$fx/witness.name")

# --- Offline: keys, cosignatures and the proof verifier, against agentidp_core -----------------

check "the double's vkey (hex seed) is agentidp_core's" "$(cat "$fx/witness.vkey")" \
  "$("$python" "$double" --witness-name "$witness_name" --witness-key-file "$fx/witness.seed" --print-vkey)"

"$python" - "$fx/witness.seed" "$work/witness.pem" <<'EOF'
import binascii, sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = Ed25519PrivateKey.from_private_bytes(binascii.unhexlify(open(sys.argv[1]).read().strip()))
open(sys.argv[2], "wb").write(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
EOF
check "the double's vkey (PKCS#8 PEM) is agentidp_core's" "$(cat "$fx/witness.vkey")" \
  "$("$python" "$double" --witness-name "$witness_name" --witness-key-file "$work/witness.pem" --print-vkey)"

# The checkpoint body of the first fixture: the note up to its blank line.
sed '/^$/,$d' "$fx/first.note" > "$work/first.body"
cosign_py() {
  "$python" - "$double" "$fx/witness.seed" "$witness_name" "$work/first.body" "$1" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("witness_double", sys.argv[1])
wd = importlib.util.module_from_spec(spec); spec.loader.exec_module(wd)
cosigner = wd.Cosigner(sys.argv[3], wd.load_witness_key(sys.argv[2]))
sys.stdout.write(cosigner.cosign(open(sys.argv[4], "rb").read(), int(sys.argv[5])))
EOF
}
check "the double's cosignature is agentidp_core::witness::cosign's, byte for byte" \
  "$(fixtures cosign "$work/first.body" 1700000000)" "$(cosign_py 1700000000)"
check "a cosignature at another time differs" "different" \
  "$([ "$(cosign_py 1700000000)" != "$(cosign_py 1700000001)" ] && echo different)"

fixtures proofs 20 > "$work/proofs" || fatal "generating the proofs"
proof_result=$("$python" - "$double" "$work/proofs" <<'EOF'
import base64, importlib.util, sys
spec = importlib.util.spec_from_file_location("witness_double", sys.argv[1])
wd = importlib.util.module_from_spec(spec); spec.loader.exec_module(wd)
good = bad = wrong = 0
for line in open(sys.argv[2]):
    kind, old, new, old_root, new_root, *proof = line.split()
    old, new = int(old), int(new)
    old_root, new_root = base64.b64decode(old_root), base64.b64decode(new_root)
    proof = [base64.b64decode(p) for p in proof]
    ok = wd.verify_consistency(old, new, old_root, new_root, proof)
    if kind == "good":
        good += 1
        wrong += not ok
        # Each hash of the proof, and each root, matters; a truncated proof fails.
        for i in range(len(proof)):
            flipped = proof[:i] + [bytes([proof[i][0] ^ 1]) + proof[i][1:]] + proof[i + 1:]
            wrong += wd.verify_consistency(old, new, old_root, new_root, flipped)
        if proof:
            wrong += wd.verify_consistency(old, new, old_root, new_root, proof[:-1])
        wrong += wd.verify_consistency(old, new, new_root, old_root, proof) and old_root != new_root
    else:
        bad += 1
        wrong += ok
print(f"{good} {bad} {wrong}")
EOF
)
check "the double's RFC 9162 verifier: 210 proofs hold, 171 forged ones and every tampering fail" \
  "210 171 0" "$proof_result"

# --- Online: add-checkpoint ---------------------------------------------------------------------

url=http://127.0.0.1:$port
healthy() { curl -sf -o /dev/null "$url/healthz"; }
healthy && fatal "something already answers on port $port"
start_double() {
  "$python" "$double" --port "$port" --state-dir "$state" --log-vkey "$(cat "$fx/log.vkey")" \
    --witness-name "$witness_name" --witness-key-file "$fx/witness.seed" 2>> "$work/double.log" &
  pids+=($!)
  wait_for 20 healthy || fatal "the double did not start"
}
start_double
check "GET /healthz answers 200" "200" "$(curl -s -o /dev/null -w '%{http_code}' "$url/healthz")"

# post FIXTURE: POSTs FIXTURE.req, the response body to $work/FIXTURE.out; prints the status.
post() {
  curl -s -o "$work/$1.out" -w '%{http_code}' -H 'Content-Type: text/plain' \
    --data-binary @"$fx/$1.req" "$url/add-checkpoint"
}
# cosigned FIXTURE: agentidp_core verifies the 200's cosignature on FIXTURE.note with the log's
# and the witness's keys, at a time within five minutes of now.
cosigned() {
  local out at
  out=$(fixtures verify "$fx/$1.note" "$work/$1.out" 2>&1) || { echo "refused: $out"; return; }
  at=${out##* at }
  if [ $((at - $(date +%s))) -gt 300 ] || [ $(($(date +%s) - at)) -gt 300 ]; then
    echo "timestamp $at is not now"
  else
    echo "${out% at *}"
  fi
}
both="verified by agentidp.example, $witness_name"
# conflict FIXTURE: the 409's content type and body, the size as agentidp_core parses it.
conflict() {
  local type
  type=$(curl -s -o "$work/$1.out" -w '%{content_type}' -H 'Content-Type: text/plain' \
    --data-binary @"$fx/$1.req" "$url/add-checkpoint")
  echo "$type $(fixtures conflict-size "$work/$1.out" 2>&1)"
}

check "first checkpoint (old 0, size 5): 200" "200" "$(post first)"
check "first checkpoint: the cosignature verifies (agentidp_core)" "$both" "$(cosigned first)"
check "a cosignature over another checkpoint is refused (agentidp_core)" "refused" \
  "$(fixtures verify "$fx/grow.note" "$work/first.out" >/dev/null 2>&1 || echo refused)"
check "a consistent larger checkpoint (5 -> 9): 200" "200" "$(post grow)"
check "5 -> 9: the cosignature verifies" "$both" "$(cosigned grow)"
check "rewritten history (old 9, proof from the forged tree): 422" "422" "$(post forged)"
check "same size as the latest (9), another root: 422" "422" "$(post forked)"
check "wrong old size (5, the latest is 9): 409" "409" "$(post wrong-old)"
check "409: text/x.tlog.size with the witness's size" "text/x.tlog.size 9" "$(conflict wrong-old)"
check "a checkpoint smaller than the latest, old 9 > size 7: 400" "400" "$(post smaller)"
check "a checkpoint smaller than the latest, old 7: 409" "409" "$(post smaller-old)"
check "a tampered proof (9 -> 12): 422" "422" "$(post garbled-proof)"
check "a log the witness does not know: 404" "404" "$(post unknown-log)"
check "a known origin signed by another key: 403" "403" "$(post wrong-key)"
check "the log's key id with a signature that fails: 403" "403" "$(post bad-signature)"
check "no empty line before the note: 400" "400" "$(post no-blank-line)"
check "old size with a leading zero: 400" "400" "$(post old-leading-zero)"
check "old size larger than the checkpoint's: 400" "400" "$(post old-too-big)"
check "a proof line that is not base64: 400" "400" "$(post bad-proof-line)"
check "another chain, old 0 with a proof: 422" "422" "$(post proof-from-zero)"
check "size 0 with a root other than the empty tree's: 422" "422" "$(post empty-bad-root)"
check "size 0 with the empty tree's root: 200" "200" "$(post empty)"

origin_hash=$(printf '%s' "agentidp.example/global" | sha256sum | cut -d' ' -f1)
cat "$fx/grow.note" "$work/grow.out" > "$work/served.expected"
check "GET /<origin hash>/checkpoint serves the 9 with the log's and the witness's signatures" \
  "same" "$(curl -s "$url/$origin_hash/checkpoint" | cmp -s - "$work/served.expected" && echo same)"

# A restart remembers the latest checkpoint.
kill "${pids[-1]}" && wait "${pids[-1]}" 2>/dev/null
wait_for 10 bash -c "! curl -sf -o /dev/null '$url/healthz'" || fatal "the double did not stop"
start_double
check "after a restart, the wrong old size still gets 409 and 9" "text/x.tlog.size 9" \
  "$(conflict wrong-old)"
check "after every refusal, 9 -> 12 is cosigned: 200" "200" "$(post grow-again)"
check "9 -> 12: the cosignature verifies" "$both" "$(cosigned grow-again)"
check "one log line per add-checkpoint request on stderr, none with the key" "21 0" \
  "$(grep -cE '^witness-double: POST /add-checkpoint [0-9]{3} ' "$work/double.log") $(grep -c "$(cat "$fx/witness.seed")" "$work/double.log")"

summary "$name"
