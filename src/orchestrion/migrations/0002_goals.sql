-- Goals, deliverables, feedback and item exclusions: the proposal loop's memory.
-- All timestamps are UTC (TIMESTAMP without zone); `date` is the delivery day.

-- Every goal candidate considered for a user on a day, chosen or not. The id is a hash of
-- (user, template, params, date), so proposing the same day again finds the same ids.
CREATE TABLE goals (
    goal_id       VARCHAR   PRIMARY KEY,   -- 'g_' + blake2b(user|template|params|date)
    user_id       VARCHAR   NOT NULL,
    date          DATE      NOT NULL,
    template      VARCHAR   NOT NULL,      -- playlist, reorder, digest, watchlist, or a plugin's name
    variant       VARCHAR   NOT NULL,      -- the template's kind of goal: due, mood, topic, daily, ...
    kind          VARCHAR   NOT NULL,      -- variant plus its main parameter: 'mood:feel-good', 'topic:3'
    params        JSON      NOT NULL,      -- the goal's parameters (part of its id)
    title         VARCHAR   NOT NULL,
    items         VARCHAR[] NOT NULL,      -- the items the goal would use, in order
    details       JSON,                    -- template-specific rendering data (quantities, prices, genres)
    features      JSON      NOT NULL,      -- the ranker's features as scored
    score         DOUBLE    NOT NULL,      -- the policy's score (prior or ranker probability)
    propensity    DOUBLE,                  -- P(this goal chosen at its slot | the policy), chosen goals only
    slot          INTEGER,                 -- 1, 2, ... the order of choice, chosen goals only
    policy        VARCHAR   NOT NULL,      -- 'prior' or 'ranker:<version>', with the exploration rate
    status        VARCHAR   NOT NULL,      -- chosen | not_chosen
    reason        VARCHAR,                 -- why not chosen: score | budget | policy | fatigue
    reason_detail VARCHAR,                 -- the same in words, with the numbers
    why           VARCHAR   NOT NULL,      -- "why this", built from the user's actual signals
    cost          DOUBLE    NOT NULL,      -- estimated money (retail) or 0
    risk          DOUBLE    NOT NULL,      -- 0 .. 1
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX goals_user_date ON goals (user_id, date);

-- What was delivered. Until the orchestrator plans and executes goals, a chosen goal is its
-- own deliverable: deliverable_id = 'd_' + the goal's hash, so it is as stable as the goal id.
CREATE TABLE deliverables (
    deliverable_id VARCHAR   PRIMARY KEY,
    goal_id        VARCHAR   NOT NULL UNIQUE,
    user_id        VARCHAR   NOT NULL,
    date           DATE      NOT NULL,
    template       VARCHAR   NOT NULL,
    title          VARCHAR   NOT NULL,
    items          VARCHAR[] NOT NULL,
    status         VARCHAR   NOT NULL,     -- proposed (more states arrive with the orchestrator)
    created_at     TIMESTAMP NOT NULL
);
CREATE INDEX deliverables_user ON deliverables (user_id, date);

-- Thumbs on deliverables and on their items. Appended, never updated: the latest row for a
-- deliverable is its label; earlier rows stay as the history.
CREATE SEQUENCE feedback_seq;
CREATE TABLE feedback (
    feedback_id    BIGINT    PRIMARY KEY DEFAULT nextval('feedback_seq'),
    deliverable_id VARCHAR   NOT NULL,
    user_id        VARCHAR   NOT NULL,
    thumb          VARCHAR,                -- up | down | NULL (only item thumbs were given)
    reason         VARCHAR,
    items          JSON,                   -- [{"item_id": ..., "thumb": "up"|"down"}, ...]
    source         VARCHAR   NOT NULL,     -- api | import | replay
    received_at    TIMESTAMP NOT NULL
);
CREATE INDEX feedback_deliverable ON feedback (deliverable_id);

-- Items a user thumbed down: no future goal of that user uses them.
CREATE TABLE item_exclusions (
    user_id        VARCHAR   NOT NULL,
    item_id        VARCHAR   NOT NULL,
    deliverable_id VARCHAR,
    created_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, item_id)
);
