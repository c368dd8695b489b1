-- Browser sessions: the SHA-256 of the cookie's secret (never the secret), whose user,
-- and an absolute expiry. Ending a user's sessions is one DELETE.
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,                   -- hex SHA-256 of the cookie secret
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Open alerts per server for the fleet overview.
CREATE INDEX alerts_open ON alerts (server_id) WHERE status <> 'resolved';
