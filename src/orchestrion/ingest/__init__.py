"""Ingestion: events, items and users in, over HTTP, in bulk files or from datasets."""
