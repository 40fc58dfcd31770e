-- Fault isolation: a deliverable that failed (a receiver down, a file error, a tool or model
-- exception) is tried again by later runs until it has failed `delivery_max_attempts` times.
ALTER TABLE deliverables ADD COLUMN failures INTEGER DEFAULT 0;
