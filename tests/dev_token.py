"""Prints an HS256 JWT for local development: scope audit:read, valid for 24 hours.

The secret comes from JWT_HS256_SECRET, as the sidecar reads it. Standard library only.
"""
import base64
import hashlib
import hmac
import json
import os
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


now = int(time.time())
header = {"alg": "HS256", "typ": "JWT"}
claims = {"sub": "dev", "client_id": "dev-client", "scope": "audit:read", "iat": now, "nbf": now,
          "exp": now + 86400}
signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
signature = hmac.new(os.environ["JWT_HS256_SECRET"].encode(), signing_input.encode(), hashlib.sha256)
print(signing_input + "." + b64url(signature.digest()))
