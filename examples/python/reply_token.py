"""Reply addresses for reply-by-email, the same tokens as mailbridge's core/reply-token.ts.

reply+<token>@your-domain: the token carries a reference (ticket or thread id, at most 21 UTF-8
bytes) and an expiry, signed with HMAC-SHA256 under your secret and the tenant. It is lowercase
base32, so an MTA that lowercases local parts cannot break it, and reply+<token> fits the 64
characters a local part may have. Read it back from the webhook's mailboxHash
(route.recipientDetails[i].mailboxHash, or message.mailboxHash for the first recipient).
Standard library only.
"""

import base64
import hashlib
import hmac
import struct
import time

VERSION = 1
MAC_BYTES = 10
HEADER_BYTES = 5
MAX_REFERENCE_BYTES = 21


def _mac(secret: str, tenant: str, signed: bytes) -> bytes:
    # The tenant is signed but not carried: a token made for one tenant never verifies for another.
    message = f"mailbridge-reply-token\0{tenant}\0".encode() + signed
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:MAC_BYTES]


def create_reply_token(secret: str, reference: str, tenant: str, expires_at: float) -> str:
    """The token: expires_at is a Unix time in seconds (fractions are dropped)."""
    if len(secret.encode()) < 16:
        raise ValueError("a reply-token secret needs at least 16 bytes")
    ref = reference.encode()
    if not 1 <= len(ref) <= MAX_REFERENCE_BYTES:
        raise ValueError(f"a reply reference takes 1 to {MAX_REFERENCE_BYTES} UTF-8 bytes")
    signed = struct.pack(">BI", VERSION, int(expires_at)) + ref
    return base64.b32encode(signed + _mac(secret, tenant, signed)).decode().rstrip("=").lower()


def create_reply_address(secret: str, reference: str, tenant: str, expires_at: float, domain: str, prefix: str = "reply") -> str:
    return f"{prefix}+{create_reply_token(secret, reference, tenant, expires_at)}@{domain}"


def verify_reply_token(mailbox_hash, secrets, tenant, now=None):
    """Returns (reference, tenant, expires_at) for a valid token, else raises ValueError with the reason.

    secrets: one secret or a list (during a rotation any one verifies). tenant: the tenant the reply
    must belong to, or a function from the (not yet trusted) reference to the tenant.
    """
    if not mailbox_hash:
        raise ValueError("malformed")
    text = mailbox_hash.upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise ValueError("malformed") from None
    if len(raw) <= HEADER_BYTES + MAC_BYTES or raw[0] != VERSION:
        raise ValueError("malformed")
    signed, given = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    reference = signed[HEADER_BYTES:].decode("utf-8", errors="replace")
    expected_tenant = tenant(reference) if callable(tenant) else tenant
    if expected_tenant is None:
        raise ValueError("bad_signature")
    if isinstance(secrets, str):
        secrets = [secrets]
    if not any(hmac.compare_digest(_mac(secret, expected_tenant, signed), given) for secret in secrets):
        raise ValueError("bad_signature")
    (expires_at,) = struct.unpack(">I", signed[1:5])
    if (time.time() if now is None else now) > expires_at:
        raise ValueError("expired")
    return reference, expected_tenant, expires_at


if __name__ == "__main__":
    # One JSON request per line on stdin, one answer per line: how the TypeScript test checks that
    # both implementations agree.
    import json
    import sys

    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "create":
                answer = {"token": create_reply_token(request["secret"], request["reference"], request["tenant"], request["expiresAt"])}
            else:
                reference, tenant, expires_at = verify_reply_token(
                    request["token"], request["secrets"], request["tenant"], request.get("now")
                )
                answer = {"ok": True, "reference": reference, "tenant": tenant, "expiresAt": expires_at}
        except ValueError as error:
            answer = {"ok": False, "reason": str(error)}
        print(json.dumps(answer), flush=True)
