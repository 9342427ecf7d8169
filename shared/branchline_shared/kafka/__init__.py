"""Kafka plumbing: topic declarations, the wire format, producers and consumer loops."""
