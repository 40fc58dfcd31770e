"""Access: API keys and web sessions, the shells' answer to who may do what."""
