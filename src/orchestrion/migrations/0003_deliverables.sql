-- Plans, execution and delivery: what a chosen goal became, what it did to the world, and who
-- allowed it. All timestamps are UTC.

-- A deliverable is planned, reviewed and delivered in place: the row made when its goal was
-- chosen gains the plan, the content, the trace and the review.
ALTER TABLE deliverables ADD COLUMN summary    VARCHAR;
ALTER TABLE deliverables ADD COLUMN content    JSON;     -- tracks / cart lines / articles, as built by the tools
ALTER TABLE deliverables ADD COLUMN plan       JSON;     -- the validated Plan (tool calls, title, summary)
ALTER TABLE deliverables ADD COLUMN trace      JSON;     -- every step: tool, arguments, result summary, ms, tokens, cost
ALTER TABLE deliverables ADD COLUMN planner    VARCHAR;  -- 'offline' or 'llm:<model>'
ALTER TABLE deliverables ADD COLUMN fallback   VARCHAR;  -- why the offline planner took over, if it did
ALTER TABLE deliverables ADD COLUMN tokens     BIGINT;
ALTER TABLE deliverables ADD COLUMN cost       DOUBLE;   -- estimated LLM cost of planning it
ALTER TABLE deliverables ADD COLUMN review     JSON;     -- {"ok": bool, "problems": [...], "critique": ...}
ALTER TABLE deliverables ADD COLUMN attempts   INTEGER;  -- plans made (a failed review earns one re-plan)
ALTER TABLE deliverables ADD COLUMN error      VARCHAR;
ALTER TABLE deliverables ADD COLUMN updated_at TIMESTAMP;

-- The side-effect ledger. A row is claimed (committed) before the effect is attempted and
-- completed after; the key is derived from (user, goal, action, date, canonical effect), never
-- from raw model arguments, and is sent to the external system as its idempotency key.
CREATE TABLE side_effects (
    idempotency_key VARCHAR   PRIMARY KEY,
    user_id         VARCHAR   NOT NULL,
    deliverable_id  VARCHAR   NOT NULL,
    action          VARCHAR   NOT NULL,   -- place_order, publish
    effect          JSON      NOT NULL,   -- the canonical intended effect
    status          VARCHAR   NOT NULL,   -- claimed | completed | failed
    result          JSON,
    attempts        INTEGER   NOT NULL,
    claimed_at      TIMESTAMP NOT NULL,
    completed_at    TIMESTAMP
);
CREATE INDEX side_effects_deliverable ON side_effects (deliverable_id);

-- Actions a policy did not let run at once: waiting for a person (approve), running when a
-- cancel window ends (notify), or only suggested (suggest).
CREATE TABLE pending_actions (
    action_id       VARCHAR   PRIMARY KEY,   -- the effect's idempotency key
    deliverable_id  VARCHAR   NOT NULL,
    user_id         VARCHAR   NOT NULL,
    action          VARCHAR   NOT NULL,
    arguments       JSON      NOT NULL,      -- the canonical effect
    tier            VARCHAR   NOT NULL,      -- suggest | approve | notify
    status          VARCHAR   NOT NULL,      -- waiting | approved | rejected | cancelled | executed | refused | failed
    due_at          TIMESTAMP,               -- notify: runs at this time unless cancelled
    created_at      TIMESTAMP NOT NULL,
    decided_at      TIMESTAMP,
    decided_by      VARCHAR,
    detail          VARCHAR
);
CREATE INDEX pending_actions_user ON pending_actions (user_id, status);

-- Every side effect a policy refused, with the rule and the numbers: refused, never executed.
CREATE SEQUENCE policy_decisions_seq;
CREATE TABLE policy_decisions (
    decision_id     BIGINT    PRIMARY KEY DEFAULT nextval('policy_decisions_seq'),
    deliverable_id  VARCHAR,
    user_id         VARCHAR   NOT NULL,
    action          VARCHAR   NOT NULL,
    rule            VARCHAR   NOT NULL,      -- tier | money_per_order | money_per_month | webhook_host | quiet_hours | paused | daily_cap
    detail          VARCHAR   NOT NULL,
    arguments       JSON,
    created_at      TIMESTAMP NOT NULL
);
CREATE INDEX policy_decisions_user ON policy_decisions (user_id);

-- A person's own settings from the control panel: overrides of the operator's policy that may
-- only narrow it (the code clamps them), and a pause switch. They apply to the next run.
CREATE TABLE user_policies (
    user_id    VARCHAR   PRIMARY KEY,
    overrides  JSON      NOT NULL,
    paused     BOOLEAN   NOT NULL DEFAULT false,
    updated_at TIMESTAMP NOT NULL
);
