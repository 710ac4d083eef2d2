"""The shared service runtime: settings, Kafka, outbox/inbox, Postgres, HTTP conventions."""
