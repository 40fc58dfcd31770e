-- Fault isolation: a deliverable that failed (a receiver down, a file error, a tool or model
-- exception) is tried again by later runs until it has failed `delivery_max_attempts` times.
ALTER TABLE deliverables ADD COLUMN failures INTEGER DEFAULT 0;

-- The results of a deliverable's side effects (order id, outbox path, webhook status), by action,
-- as the ledger completed them. Kept out of `content` (what was built), which is written once,
-- before the effects run, so that the record always shows what the effects were made from.
ALTER TABLE deliverables ADD COLUMN effects JSON;
