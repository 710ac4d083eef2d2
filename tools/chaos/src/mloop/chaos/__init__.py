"""The whole loop under faults: a workload, a seeded fault schedule and a checker of invariants.

``make chaos SEED=7`` (``python -m mloop.chaos --seed 7``) starts a private
platform, drives the demo's loop at small size while the seed's fault
schedule kills, pauses and restarts its processes, lets it settle, and checks
every invariant over the full history. See this package's README.
"""
