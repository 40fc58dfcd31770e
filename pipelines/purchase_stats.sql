-- purchase_stats: per (user, item) purchase history as of a cut-off, for the repurchase model.
-- params: $as_of (TIMESTAMP, exclusive upper bound on ts)
--         $users (VARCHAR[]: only these customers' rows; NULL for every customer)
-- reads:  purchase_items (pipelines/purchase_items.sql, same $as_of) for the item_* columns
-- A purchase occasion is one (user, item, day); several lines of one day count once. A purchase of
-- zero or fewer units (an adjustment, a client's mistake) is not a purchase: no cart repeats it.
--   n_purchases            purchase occasions
--   first_ts, last_ts      first and latest occasion
--   mean_interval_days     mean days between consecutive occasions (NULL with one occasion)
--   median_interval_days   median of the same
--   days_since_last        days from the latest occasion to $as_of
--   days_since_first       days from the first occasion to $as_of
--   usual_quantity         median quantity per occasion
--   total_quantity         all units bought
--   last_price             unit price at the latest occasion
--   user_orders            the user's purchase days (any item) before $as_of
--   user_days_since_last   days from the user's latest purchase (any item) to $as_of
--   item_buyers            distinct users who bought the item before $as_of
--   recent_30, recent_90   the pair's purchase occasions in the last 30 / 90 days
--   user_recent_orders     the user's purchase days in the last 30 days
--   item_recent_buyers     distinct buyers of the item in the last 30 days (trend, season)
--   item_repeat_share      share of the item's buyers who bought it on two or more days
CREATE OR REPLACE TABLE purchase_stats AS
WITH lines AS (
    SELECT user_id, item_id, ts, coalesce(value, 1.0) AS quantity,
           try_cast(json_extract(properties, '$.unit_price') AS DOUBLE) AS unit_price
    FROM events
    WHERE type = 'purchase' AND item_id IS NOT NULL AND ts < $as_of::TIMESTAMP AND coalesce(value, 1.0) > 0
      AND ($users::VARCHAR[] IS NULL OR user_id IN (SELECT unnest($users::VARCHAR[])))
),
-- two lines of one occasion at the same instant: the higher price is the occasion's (not either at random)
occasions AS (
    SELECT user_id, item_id, date_trunc('day', ts) AS day, max(ts) AS ts,
           sum(quantity) AS quantity, arg_max(unit_price, (ts, unit_price)) AS unit_price
    FROM lines GROUP BY ALL
),
gaps AS (
    SELECT *, date_diff('second', lag(ts) OVER (PARTITION BY user_id, item_id ORDER BY ts), ts) / 86400.0 AS gap_days
    FROM occasions
),
users AS (
    SELECT user_id, count(DISTINCT day) AS user_orders,
           date_diff('second', max(ts), $as_of::TIMESTAMP) / 86400.0 AS user_days_since_last,
           count(DISTINCT day) FILTER (WHERE ts >= $as_of::TIMESTAMP - INTERVAL 30 DAY) AS user_recent_orders
    FROM occasions GROUP BY ALL
),
pair_stats AS (
    SELECT
        user_id,
        item_id,
        count(*)::INTEGER AS n_purchases,
        min(ts) AS first_ts,
        max(ts) AS last_ts,
        avg(gap_days) AS mean_interval_days,
        median(gap_days) AS median_interval_days,
        date_diff('second', max(ts), $as_of::TIMESTAMP) / 86400.0 AS days_since_last,
        date_diff('second', min(ts), $as_of::TIMESTAMP) / 86400.0 AS days_since_first,
        median(quantity) AS usual_quantity,
        sum(quantity) AS total_quantity,
        arg_max(unit_price, ts) AS last_price,
        count(*) FILTER (WHERE ts >= $as_of::TIMESTAMP - INTERVAL 30 DAY)::INTEGER AS recent_30,
        count(*) FILTER (WHERE ts >= $as_of::TIMESTAMP - INTERVAL 90 DAY)::INTEGER AS recent_90
    FROM gaps
    GROUP BY user_id, item_id
)
-- per-pair aggregates first, then one join to the user and item figures (no any_value over rows)
SELECT
    p.user_id, p.item_id, p.n_purchases, p.first_ts, p.last_ts, p.mean_interval_days,
    p.median_interval_days, p.days_since_last, p.days_since_first, p.usual_quantity,
    p.total_quantity, p.last_price,
    u.user_orders::INTEGER AS user_orders,
    u.user_days_since_last,
    i.item_buyers,
    p.recent_30, p.recent_90,
    u.user_recent_orders::INTEGER AS user_recent_orders,
    i.item_recent_buyers,
    i.item_repeat_share
FROM pair_stats p
JOIN users u USING (user_id)
JOIN purchase_items i USING (item_id)
