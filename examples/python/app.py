"""A mailbridge webhook receiver with Flask: verify the signature, then dedupe on webhook-id.

Verification uses only the standard library (Standard Webhooks, HMAC-SHA256 over id.timestamp.body).
Run: pip install flask, then MAILBRIDGE_SIGNING_SECRET=whsec_... PORT=3000 python3 examples/python/app.py
(docs/receivers.md, "Running the examples").
"""

import base64
import hashlib
import hmac
import json
import os
import time

from flask import Flask, request

TOLERANCE_SECONDS = 5 * 60


class InvalidWebhook(Exception):
    pass


def verify(secret: str, headers, body: bytes) -> dict:
    """Returns the payload if the signature is valid and the timestamp recent, else raises InvalidWebhook."""
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not signatures or not timestamp.isdigit():
        raise InvalidWebhook("missing headers")
    # Replay protection: an old capture does not verify, even with a good signature.
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise InvalidWebhook("timestamp outside tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # Several space-separated signatures arrive during a key rotation; one match is enough.
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise InvalidWebhook("no matching signature")


def create_app(secret: str, on_email) -> Flask:
    app = Flask(__name__)
    # Production: a table with a unique key on webhook_id, written in the same transaction as the work.
    processed = set()

    @app.post("/webhooks/mailbridge")
    def receive():
        # The signature covers the exact bytes sent: use the raw body, not request.json.
        try:
            email = verify(secret, request.headers, request.get_data())
        except InvalidWebhook as error:
            return f"invalid webhook: {error}", 400
        webhook_id = request.headers["webhook-id"]
        # Delivery is at least once: the same webhook-id may come again, answer 2xx without redoing the work.
        if webhook_id not in processed:
            on_email(email, webhook_id)
            processed.add(webhook_id)
        return "", 204

    return app


def print_email(email: dict, webhook_id: str) -> None:
    print(f"processed {webhook_id}: {email['message']['subject']}", flush=True)


if __name__ == "__main__":
    from werkzeug.serving import make_server

    app = create_app(os.environ["MAILBRIDGE_SIGNING_SECRET"], print_email)
    server = make_server("127.0.0.1", int(os.environ.get("PORT", "3000")), app)
    print(f"listening on http://127.0.0.1:{server.port}/webhooks/mailbridge", flush=True)
    server.serve_forever()
