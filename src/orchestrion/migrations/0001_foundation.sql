-- The foundation tables. `events` is a documented contract: people query this file with SQL.
-- All timestamps are UTC (TIMESTAMP without zone, by convention).
CREATE TABLE events (
    event_id    VARCHAR   PRIMARY KEY,   -- deduplication key, forever
    user_id     VARCHAR   NOT NULL,
    type        VARCHAR   NOT NULL,      -- play, purchase, return, view, rate, like, ...
    item_id     VARCHAR,
    domain      VARCHAR,                 -- music, retail, news, movies, ...
    ts          TIMESTAMP NOT NULL,      -- when it happened (UTC)
    received_at TIMESTAMP NOT NULL,      -- when orchestrion stored it (UTC)
    value       DOUBLE,                  -- rating, play count, quantity, ...
    properties  JSON                     -- free properties, as sent
);

CREATE SEQUENCE failed_events_seq;
CREATE TABLE failed_events (
    failed_id   BIGINT    PRIMARY KEY DEFAULT nextval('failed_events_seq'),
    received_at TIMESTAMP NOT NULL,
    source      VARCHAR   NOT NULL,      -- http:/v1/events, bulk:FILE, dataset:NAME, ...
    event_id    VARCHAR,
    reason      VARCHAR   NOT NULL,
    payload     VARCHAR                  -- the event exactly as received
);

CREATE TABLE items (
    item_id     VARCHAR   PRIMARY KEY,
    domain      VARCHAR,
    title       VARCHAR,
    creator     VARCHAR,
    price       DOUBLE,
    currency    VARCHAR,
    category    VARCHAR,
    tags        VARCHAR[],
    text        VARCHAR,
    properties  JSON,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE users (
    user_id     VARCHAR   PRIMARY KEY,
    timezone    VARCHAR   NOT NULL DEFAULT 'UTC',
    traits      JSON,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE api_keys (
    key_id      VARCHAR   PRIMARY KEY,   -- public prefix of the key, shown in listings
    key_hash    VARCHAR   NOT NULL,      -- sha256 of the whole key; the key itself is never stored
    role        VARCHAR   NOT NULL,      -- write | admin | user
    user_id     VARCHAR,                 -- for role = user: whose data the key may read
    created_at  TIMESTAMP NOT NULL,
    revoked_at  TIMESTAMP
);
