"""Delivery: plans carried out through the effect ledger, deliverable records, channels, rendering and feedback."""
