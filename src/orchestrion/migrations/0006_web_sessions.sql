-- Web sessions, stored so that they can be ended: signing out, revoking the API key or the
-- sign-in link a session came from, or signing a user out everywhere ends it at the next request.
-- Owned by orchestrion.access.sessions. All timestamps are UTC.

CREATE TABLE web_sessions (
    session_hash VARCHAR   PRIMARY KEY,   -- sha256 of the cookie's random token; the token is never stored
    kind         VARCHAR   NOT NULL,      -- user | admin
    user_id      VARCHAR,                 -- for kind = user
    key_id       VARCHAR,                 -- the API key it was signed in with, if any
    link_id      VARCHAR,                 -- the sign-in link it was signed in with, if any
    form_token   VARCHAR   NOT NULL,      -- carried back by every form of the session (CSRF)
    created_at   TIMESTAMP NOT NULL,
    seen_at      TIMESTAMP NOT NULL,      -- last request (refreshed at most every few minutes): idle expiry
    expires_at   TIMESTAMP NOT NULL,      -- absolute lifetime
    ended_at     TIMESTAMP,
    ended_why    VARCHAR                  -- signed out | key revoked | link revoked | user signed out
);

-- Sign-in links are signed tokens made without the database (`orchestrion users link`); each
-- carries a random link_id. A link signs in once: using it records it here, as does revoking it.
CREATE TABLE web_links (
    link_id      VARCHAR   PRIMARY KEY,
    user_id      VARCHAR,
    used_at      TIMESTAMP,
    revoked_at   TIMESTAMP
);

-- A user signed out everywhere: links issued up to `links_before` no longer sign them in.
CREATE TABLE web_signouts (
    user_id      VARCHAR   PRIMARY KEY,
    links_before TIMESTAMP NOT NULL
);
