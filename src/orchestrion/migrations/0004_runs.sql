-- The run ledger: every execution of a pipeline for one partition (a date, optionally a shard),
-- and which users each run has finished, so that a killed run resumes where it stopped and a
-- finished key is not run again. All timestamps are UTC.

-- One attempt at one key (pipeline, partition, shard). `--force` on a finished key makes a new
-- attempt; resuming an interrupted or failed attempt keeps its row (and its finished users).
CREATE TABLE runs (
    run_id       VARCHAR   PRIMARY KEY,   -- '<pipeline>-<partition>[-<shard>]-a<attempt>'
    pipeline     VARCHAR   NOT NULL,      -- daily | retrain | backfill parts are daily runs
    partition    DATE      NOT NULL,      -- the day the run is for
    shard        VARCHAR   NOT NULL,      -- '' for the whole day, 'users-<hash>' for --users runs
    attempt      INTEGER   NOT NULL,
    status       VARCHAR   NOT NULL,      -- running | succeeded | failed | interrupted
    trigger      VARCHAR   NOT NULL,      -- cli | api | schedule | catch-up | backfill | demo
    params       JSON,
    owner        VARCHAR   NOT NULL,      -- '<host>:<pid>:<token>' of the process running it
    pid          INTEGER   NOT NULL,
    host         VARCHAR   NOT NULL,
    started_at   TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,      -- refreshed after every batch; a dead owner stops it
    finished_at  TIMESTAMP,
    resumes      INTEGER   NOT NULL DEFAULT 0,
    users_total  INTEGER   NOT NULL DEFAULT 0,
    users_done   INTEGER   NOT NULL DEFAULT 0,
    batches      INTEGER   NOT NULL DEFAULT 0,
    seconds      DOUBLE    NOT NULL DEFAULT 0,  -- time spent working, summed over resumes
    counts       JSON,                    -- the pipeline's own counts (goals, chosen, models, ...)
    error        VARCHAR,
    UNIQUE (pipeline, partition, shard, attempt)
);
CREATE INDEX runs_key ON runs (pipeline, partition, shard);

-- The users of one run in their fixed batches; done_at is set when the batch committed.
CREATE TABLE run_users (
    run_id   VARCHAR   NOT NULL,
    user_id  VARCHAR   NOT NULL,
    batch    INTEGER   NOT NULL,
    done_at  TIMESTAMP,
    PRIMARY KEY (run_id, user_id)
);
