"""The tamper-evident ledger's pure core, shared by the audit service and offline verifiers.

- :mod:`mloop.ledger.canonical` — canonical JSON (RFC 8785 style) of an event.
- :mod:`mloop.ledger.merkle` — RFC 6962 leaf/node hashing, inclusion and consistency proofs.
- :mod:`mloop.ledger.checkpoint` — Ed25519-signed checkpoints (signed-note format), keys and checkpoint files.
- :mod:`mloop.ledger.ledger_domain` — ledger rows and streaming chain verification.
- :mod:`mloop.ledger.bundle` — the evidence bundle format, and writing a bundle.
- :mod:`mloop.ledger.verify` — verifying a bundle offline.
"""
