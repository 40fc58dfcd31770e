-- How far the trigger watcher has handled committed events (by received_at): a restart resumes
-- from here, so an acknowledged event fires its rule even when the server stops (or is killed)
-- before it looked. One row, 'watcher'; written only by runs/triggers.py.
CREATE TABLE trigger_marks (
    name          VARCHAR   PRIMARY KEY,
    handled_until TIMESTAMP NOT NULL
);
