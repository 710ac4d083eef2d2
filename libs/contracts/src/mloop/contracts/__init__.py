"""Contracts shared by every mloop service: topics, the event envelope, payloads."""
