-- Notification channels, silences, and the durable outbox of notifications with every
-- delivery attempt.

CREATE TABLE channels (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    definition TEXT    NOT NULL,      -- JSON (serverpulse-alerting::notify::Channel); the API redacts secrets
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    definition TEXT    NOT NULL,      -- JSON (serverpulse-alerting::notify::Silence)
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    ends_at    INTEGER                -- one-off silences: when they end; weekly ones: NULL
);

CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id        INTEGER REFERENCES alerts (id) ON DELETE CASCADE,
    channel_id      INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    event           TEXT    NOT NULL,  -- firing, escalated, resolved, repeat, test
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX notifications_alert ON notifications (alert_id, channel_id);

CREATE TABLE notification_attempts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    at              INTEGER NOT NULL,
    ok              INTEGER NOT NULL,
    error           TEXT,
    duration_ms     INTEGER NOT NULL
);
CREATE INDEX notification_attempts_of ON notification_attempts (notification_id);

-- Recorded while a silence covered it: nobody was notified.
ALTER TABLE alerts ADD COLUMN silenced INTEGER NOT NULL DEFAULT 0;
