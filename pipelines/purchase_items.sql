-- purchase_items: per item purchase figures over every customer as of a cut-off, for purchase_stats.
-- params: $as_of (TIMESTAMP, exclusive upper bound on ts)
-- A purchase occasion is one (user, item, day), as in purchase_stats.
--   item_buyers            distinct users who bought the item before $as_of
--   item_recent_buyers     distinct buyers of the item in the last 30 days (trend, season)
--   item_repeat_share      share of the item's buyers who bought it on two or more days
-- Only hash aggregates, so a memory-capped store spills them to disk instead of failing; the
-- daily run computes this once per day and the per-user statistics once per batch of users.
CREATE OR REPLACE TABLE purchase_items AS
WITH pairs AS (
    -- a pair bought on two or more days is one whose first and last purchase days differ: one
    -- aggregate per (user, item), not one per purchase day (half the time; equal on the 16x day)
    SELECT item_id, user_id,
           min(date_trunc('day', ts)) < max(date_trunc('day', ts)) AS repeat,
           max(ts) >= $as_of::TIMESTAMP - INTERVAL 30 DAY AS recent
    FROM events
    WHERE type = 'purchase' AND item_id IS NOT NULL AND ts < $as_of::TIMESTAMP AND coalesce(value, 1.0) > 0
    GROUP BY ALL
)
SELECT item_id,
       count(*)::INTEGER AS item_buyers,
       count(*) FILTER (WHERE recent)::INTEGER AS item_recent_buyers,
       avg(CASE WHEN repeat THEN 1.0 ELSE 0.0 END) AS item_repeat_share
FROM pairs
GROUP BY item_id
