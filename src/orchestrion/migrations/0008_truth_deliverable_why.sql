-- "Why this" as written for what was finally delivered: after the money cap, exclusions, stock and
-- re-plans cut a goal's items, the goal's own "why" (written for the candidate) may no longer hold.
-- NULL for deliverables written before this migration and for those not planned yet (the goal's
-- "why" stands for them).
ALTER TABLE deliverables ADD COLUMN why VARCHAR;
