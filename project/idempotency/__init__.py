"""Idempotent submits: a POST retried with the same `Idempotency-Key` is answered once."""

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"[\x21-\x7e]{1,255}"  # visible ASCII, as in the IETF draft's examples
