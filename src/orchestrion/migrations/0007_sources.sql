-- Sources: a write key belongs to a source (an app, a shop) with a default domain, and every
-- event records the source it came from (a key's source, or http:/v1/..., bulk:FILE, dataset:NAME).
ALTER TABLE api_keys ADD COLUMN source VARCHAR;   -- e.g. shop; events sent with the key list it
ALTER TABLE api_keys ADD COLUMN domain VARCHAR;   -- the domain of its events that carry none
ALTER TABLE events ADD COLUMN source VARCHAR;     -- NULL for events stored before this migration
