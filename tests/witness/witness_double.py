#!/usr/bin/env python3
"""A C2SP tlog-witness for tests: `POST /add-checkpoint` (https://c2sp.org/tlog-witness) with
Ed25519 cosignature/v1 cosignatures (https://c2sp.org/tlog-cosignature).

Written from the specs, independently of agentidp_core: its own note parsing, its own RFC 9162
§2.1.4.2 consistency-proof verification, its own cosigning. Standard library plus `cryptography`.

    witness_double.py --port 3941 --state-dir DIR --log-vkey VKEY [VKEY...] \\
        --witness-name witness.example --witness-key-file KEY
    witness_double.py --witness-name witness.example --witness-key-file KEY --print-vkey

--log-vkey    a log's note verifier key, `name+hex(key id)+base64(0x01 || Ed25519 key)`; it may
              be repeated. A log key named N is trusted for the origin N and for every origin
              `N/<anything>` (pg_agentidp's origins are `<log name>/<chain id>`); any other origin
              is unknown (404).
--witness-key-file
              the witness's Ed25519 key: 64 hex digits (the 32-byte seed; surrounding whitespace
              ignored), or an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as
              `openssl genpkey -algorithm ed25519` writes it).
--state-dir   the latest cosigned checkpoint of each origin, one file per origin named by the
              SHA-256 of the origin in hex, replaced atomically; a restart remembers them.

Answers, in the order the spec's checks are made (the first that applies wins):
  400  the body is not `old <N>`, base64 proof lines, an empty line and a note; the note or its
       checkpoint is malformed; more than 63 proof lines; old size > checkpoint size
  404  no configured log key covers the checkpoint's origin
  403  no signature from a trusted key, or a trusted key's signature fails to verify
  422  size 0 with a root other than the empty tree's
  409  old size != the size of the latest checkpoint cosigned for the origin (0 if none); the
       body is that size and a newline, Content-Type text/x.tlog.size
  422  old size 0 with a non-empty proof; the proof does not verify; old size == checkpoint size
       with a different root
  200  one cosignature/v1 line with the current time, after the checkpoint was persisted
Also `GET /healthz` (200) and `GET /<hex SHA-256 of origin>/checkpoint` (the stored, cosigned
checkpoint, or 404). One line per request on stderr; no key material is ever logged.
"""

import argparse
import base64
import binascii
import hashlib
import http.server
import os
import re
import struct
import sys
import tempfile
import threading
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
MAX_PROOF_LINES = 63
MAX_BODY = 1 << 20
EMPTY_ROOT = hashlib.sha256(b"").digest()
DECIMAL = re.compile(r"0|[1-9][0-9]*")


class Refused(Exception):
    """A request the witness answers with an error status."""

    def __init__(self, status, reason, body=None, content_type="text/plain; charset=utf-8"):
        super().__init__(reason)
        self.status, self.reason = status, reason
        self.body = (body if body is not None else reason + "\n").encode()
        self.content_type = content_type


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def key_name_valid(name):
    return name != "" and "+" not in name and not any(c.isspace() for c in name)


def key_id(name, sig_type, public_key):
    return struct.unpack(">I", sha256(name.encode(), b"\n", bytes([sig_type]), public_key)[:4])[0]


def parse_decimal(text):
    if not DECIMAL.fullmatch(text):
        raise ValueError("not a canonical decimal")
    value = int(text)
    if value >= 1 << 64:
        raise ValueError("too large")
    return value


def b64decode(text):
    return base64.b64decode(text.encode("ascii"), validate=True)


# --- Keys ---------------------------------------------------------------------------------------


class LogKey:
    """A log's Ed25519 note verifier key (signature type 0x01)."""

    def __init__(self, vkey):
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise ValueError(f"malformed vkey {vkey!r}")
        name, id_hex, key_b64 = parts
        if not key_name_valid(name) or not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex):
            raise ValueError(f"malformed vkey {vkey!r}")
        encoded = b64decode(key_b64)
        if len(encoded) != 33 or encoded[0] != SIG_ED25519:
            raise ValueError(f"not an Ed25519 note key: {vkey!r}")
        if key_id(name, SIG_ED25519, encoded[1:]) != int(id_hex, 16):
            raise ValueError(f"key id does not match the key: {vkey!r}")
        self.name, self.id = name, int(id_hex, 16)
        self.key = Ed25519PublicKey.from_public_bytes(encoded[1:])

    def covers(self, origin):
        return origin == self.name or origin.startswith(self.name + "/")

    def verifies(self, text, signature):
        try:
            self.key.verify(signature, text)
            return True
        except InvalidSignature:
            return False


def load_witness_key(path):
    with open(path, "rb") as f:
        data = f.read()
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key")
        return key
    try:
        seed = binascii.unhexlify(data.strip())
    except binascii.Error as e:
        raise ValueError(f"{path}: neither 64 hex digits nor a PEM key") from e
    if len(seed) != 32:
        raise ValueError(f"{path}: an Ed25519 seed is 32 bytes, 64 hex digits")
    return Ed25519PrivateKey.from_private_bytes(seed)


class Cosigner:
    """The witness's own key: Ed25519 cosignature/v1 (signature type 0x04)."""

    def __init__(self, name, private_key):
        if not key_name_valid(name):
            raise ValueError(f"invalid witness name {name!r}")
        self.name, self.private_key = name, private_key
        self.public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.id = key_id(name, SIG_COSIGNATURE_V1, self.public)

    def vkey(self):
        encoded = base64.b64encode(bytes([SIG_COSIGNATURE_V1]) + self.public).decode()
        return f"{self.name}+{self.id:08x}+{encoded}"

    def cosign(self, text, timestamp):
        """The signature line over the checkpoint `text` (all its lines) at `timestamp`."""
        if not 0 < timestamp < 1 << 63:
            raise ValueError("timestamp out of range")
        message = b"cosignature/v1\ntime %d\n" % timestamp + text
        signature = self.private_key.sign(message)
        blob = struct.pack(">IQ", self.id, timestamp) + signature
        return f"\u2014 {self.name} {base64.b64encode(blob).decode()}\n"


# --- Notes, checkpoints, requests ---------------------------------------------------------------


def parse_note(data):
    """(text, [(name, key id, signature bytes, line)]) of a signed note (c2sp.org/signed-note)."""
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError("note is not UTF-8") from e
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise ValueError("control character in note")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise ValueError("note has no signature block")
    text, block = note[: cut + 1], note[cut + 2 : -1]
    signatures = []
    for line in block.split("\n"):
        if not line.startswith("\u2014 "):
            raise ValueError("malformed signature line")
        name, _, b64 = line[2:].partition(" ")
        if not key_name_valid(name) or " " in b64:
            raise ValueError("malformed signature line")
        try:
            blob = b64decode(b64)
        except (binascii.Error, ValueError) as e:
            raise ValueError("malformed signature line") from e
        if len(blob) < 5:
            raise ValueError("malformed signature line")
        signatures.append((name, struct.unpack(">I", blob[:4])[0], blob[4:], line))
    return text.encode(), signatures


def parse_checkpoint(text):
    """(origin, size, root) of a checkpoint body (c2sp.org/tlog-checkpoint)."""
    lines = text.decode().split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise ValueError("a checkpoint has at least three lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if origin == "" or any(line == "" for line in lines[3:-1]):
        raise ValueError("empty checkpoint line")
    root = b64decode(root)
    if len(root) != 32:
        raise ValueError("the root is not a SHA-256 hash")
    return origin, parse_decimal(size), root


def parse_request(body):
    """(old size, proof, note bytes) of an add-checkpoint body."""
    cut = body.find(b"\n\n")
    if cut < 0:
        raise ValueError("no empty line after the proof")
    head, note = body[:cut].decode("ascii", "replace").split("\n"), body[cut + 2 :]
    if not head[0].startswith("old "):
        raise ValueError("no old size line")
    old = parse_decimal(head[0][4:])
    proof = []
    for line in head[1:]:
        try:
            h = b64decode(line)
        except (binascii.Error, ValueError) as e:
            raise ValueError("a proof line is not base64") from e
        if len(h) != 32:
            raise ValueError("a proof line is not a SHA-256 hash")
        proof.append(h)
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError("more than 63 proof lines")
    return old, proof, note


# --- RFC 9162 §2.1.4.2 --------------------------------------------------------------------------


def node(left, right):
    return sha256(b"\x01", left, right)


def verify_consistency(first, second, first_hash, second_hash, proof):
    """Whether `proof` shows the tree of `second` leaves (root `second_hash`) extends the one of
    `first` leaves (root `first_hash`), 0 < first <= second: RFC 9162 §2.1.4.2, step by step."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not proof and first_hash == second_hash
    if not proof:  # 1.
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # 2. first is an exact power of 2
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # 3.
    while fn & 1:  # 4.
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # 5.
    for c in path[1:]:  # 6.
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            if not fn & 1:
                while fn != 0 and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0  # 7.


# --- The witness --------------------------------------------------------------------------------


class Witness:
    def __init__(self, state_dir, log_keys, cosigner, clock=time.time):
        self.state_dir, self.log_keys, self.cosigner, self.clock = state_dir, log_keys, cosigner, clock
        self.lock = threading.Lock()
        os.makedirs(state_dir, exist_ok=True)

    def path(self, origin):
        return os.path.join(self.state_dir, hashlib.sha256(origin.encode()).hexdigest())

    def latest(self, origin):
        """(size, root) of the latest checkpoint cosigned for `origin`, (0, empty root) if none."""
        try:
            with open(self.path(origin), "rb") as f:
                text, _ = parse_note(f.read())
        except FileNotFoundError:
            return 0, EMPTY_ROOT
        stored_origin, size, root = parse_checkpoint(text)
        if stored_origin != origin:
            raise RuntimeError("incoherent state file")
        return size, root

    def stored(self, origin_hash):
        if not re.fullmatch(r"[0-9a-f]{64}", origin_hash):
            return None
        try:
            with open(os.path.join(self.state_dir, origin_hash), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def persist(self, origin, note):
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(note)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(origin))
        except BaseException:
            os.unlink(tmp)
            raise
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def add_checkpoint(self, body, context):
        """The cosignature line for an add-checkpoint `body`, or Refused."""
        try:
            old, proof, note = parse_request(body)
            text, signatures = parse_note(note)
        except ValueError as e:
            raise Refused(400, f"bad request: {e}")
        origin = text.split(b"\n", 1)[0].decode("utf-8")
        context["origin"] = origin
        trusted = [k for k in self.log_keys if k.covers(origin)]
        if not trusted:
            raise Refused(404, "unknown log")
        verified = []
        for name, kid, signature, line in signatures:
            key = next((k for k in trusted if (k.name, k.id) == (name, kid)), None)
            if key is None:
                continue  # a signature from an unknown key is ignored
            if not key.verifies(text, signature):
                raise Refused(403, f"invalid signature by {name}")
            verified.append(line)
        if not verified:
            raise Refused(403, "no signature from a trusted key")
        try:
            _, size, root = parse_checkpoint(text)
        except ValueError as e:
            raise Refused(400, f"bad checkpoint: {e}")
        context.update(old=old, size=size)
        if old > size:
            raise Refused(400, "old size is larger than the checkpoint's")
        if size == 0 and root != EMPTY_ROOT:
            raise Refused(422, "a tree of size 0 has the empty tree's root")
        with self.lock:  # the check and the update are one step
            latest_size, latest_root = self.latest(origin)
            if old != latest_size:
                raise Refused(
                    409,
                    f"old size {old} is not the latest cosigned size {latest_size}",
                    body=f"{latest_size}\n",
                    content_type="text/x.tlog.size",
                )
            if old == 0:
                if proof:
                    raise Refused(422, "a proof from the empty tree must be empty")
            elif old == size:
                if proof or root != latest_root:
                    raise Refused(422, "same size as the latest cosigned, another root")
            elif not verify_consistency(old, size, latest_root, root, proof):
                raise Refused(422, "the consistency proof does not verify")
            cosignature = self.cosigner.cosign(text, int(self.clock()))
            # Stored as served: the checkpoint, the log signatures that verified, this one.
            stored = text + b"\n" + "".join(f"{line}\n" for line in verified).encode()
            self.persist(origin, stored + cosignature.encode())
        return cosignature


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "witness-double"
    witness = None  # set by main

    def reply(self, status, body, content_type="text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            self.note_request(200, {})
            return self.reply(200, b"ok\n")
        match = re.fullmatch(r"/([0-9a-f]{64})/checkpoint", self.path)
        stored = self.witness.stored(match.group(1)) if match else None
        if stored is None:
            self.note_request(404, {})
            return self.reply(404, b"not found\n")
        self.note_request(200, {})
        self.reply(200, stored)

    def do_POST(self):
        if self.path != "/add-checkpoint":
            self.note_request(404, {})
            return self.reply(404, b"not found\n")
        context = {}
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self.note_request(400, context, "no or too large Content-Length")
            return self.reply(400, b"bad request: Content-Length\n")
        body = self.rfile.read(length)
        try:
            cosignature = self.witness.add_checkpoint(body, context)
        except Refused as e:
            self.note_request(e.status, context, e.reason)
            return self.reply(e.status, e.body, e.content_type)
        except Exception as e:  # noqa: BLE001 - a bug here must answer, not hang the client
            self.note_request(500, context, f"internal error: {type(e).__name__}")
            return self.reply(500, b"internal error\n")
        self.note_request(200, context, "cosigned")
        self.reply(200, cosignature.encode())

    def note_request(self, status, context, reason=""):
        fields = " ".join(f"{k}={context[k]}" for k in ("origin", "old", "size") if k in context)
        sys.stderr.write(
            f"witness-double: {self.command} {self.path} {status} {fields} {reason}".rstrip() + "\n"
        )

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # one line per request is written by note_request


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3941)
    parser.add_argument("--state-dir")
    parser.add_argument("--log-vkey", action="extend", nargs="+", default=[], metavar="VKEY")
    parser.add_argument("--witness-name", required=True)
    parser.add_argument("--witness-key-file", required=True)
    parser.add_argument("--print-vkey", action="store_true", help="print the witness vkey, exit")
    args = parser.parse_args(argv)
    try:
        cosigner = Cosigner(args.witness_name, load_witness_key(args.witness_key_file))
        if args.print_vkey:
            print(cosigner.vkey())
            return 0
        if not args.state_dir or not args.log_vkey:
            parser.error("--state-dir and at least one --log-vkey are required")
        log_keys = [LogKey(v) for v in args.log_vkey]
    except (OSError, ValueError) as e:
        print(f"witness-double: {e}", file=sys.stderr)
        return 2
    Handler.witness = Witness(args.state_dir, log_keys, cosigner)
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    sys.stderr.write(
        f"witness-double: {cosigner.vkey()} listening on {args.host}:{args.port}, "
        f"logs {', '.join(k.name for k in log_keys)}\n"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
