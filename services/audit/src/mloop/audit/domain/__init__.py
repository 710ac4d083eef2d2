"""The audit service's decisions, pure: no database, no broker, no files.

* ``records.py`` — what an event becomes in the ledger: its chain, its
  CloudEvent form, its row and the tree nodes its append completes.
* ``lifecycle.py`` — reading the ledger as a story: a version's lifecycle,
  the traffic split in force at a moment, who approved what.

The ledger's pure core (canonical JSON, Merkle trees, checkpoints, the
offline verifier) is ``mloop.ledger``.
"""
