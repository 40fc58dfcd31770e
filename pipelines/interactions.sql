-- interactions: one row per (domain, user, item) with the weights recommenders train on.
-- params: $as_of (TIMESTAMP, exclusive upper bound on ts), $half_life_days (DOUBLE, recency decay)
--   n_events   number of positive events (everything but returns, skips, tags, dislikes, cart removals)
--   value_sum  sum of event values (play counts, quantities, ratings; 1 where no value)
--   decayed    sum of 2^(-age/half_life) over the events: a recency-weighted count
--   last_ts    the latest event
CREATE OR REPLACE TABLE interactions AS
SELECT
    coalesce(domain, '') AS domain,
    user_id,
    item_id,
    count(*)::INTEGER AS n_events,
    sum(coalesce(value, 1.0)) AS value_sum,
    sum(pow(2.0, -greatest(date_diff('second', ts, $as_of::TIMESTAMP), 0) / 86400.0 / $half_life_days)) AS decayed,
    max(ts) AS last_ts
FROM events
WHERE item_id IS NOT NULL
  AND ts < $as_of::TIMESTAMP
  AND type NOT IN ('return', 'skip', 'tag', 'identify', 'dislike', 'remove_from_cart')
GROUP BY ALL
