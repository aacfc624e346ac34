"""How a delivery is signed; a receiver checks it the same way (README, "Webhooks").

The signature covers the timestamp and the exact body bytes: HMAC-SHA256 with the hook's
secret of "<timestamp>.<body>", sent as `X-Portal-Signature: sha256=<hex>` next to
`X-Portal-Timestamp` (Unix seconds), so a captured delivery replayed later is recognisable
by its age.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def encode(payload: dict) -> bytes:
    """The body as sent: compact, keys sorted, UTF-8."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), header or "")
