-- ServerPulse SQLite schema, version 1. Times are integer Unix milliseconds (UTC).

CREATE TABLE servers (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL,
    ip                   TEXT    NOT NULL,            -- canonical textual form of the parsed address
    created_at           INTEGER NOT NULL,
    hostname             TEXT,
    agent_enabled        INTEGER NOT NULL DEFAULT 1,
    agent_id             TEXT UNIQUE,
    agent_token          TEXT UNIQUE,                 -- hex SHA-256 of the agent's bearer token
    agent_status         TEXT    NOT NULL DEFAULT 'inactive'
                         CHECK (agent_status IN ('inactive', 'active', 'disconnected')),
    agent_version        TEXT,
    agent_last_heartbeat INTEGER,
    agent_last_contact   INTEGER,
    agent_config         TEXT    NOT NULL DEFAULT '{}', -- system info (JSON)
    last_metrics         TEXT,                          -- flat metrics of the newest report (JSON)
    last_metrics_at      INTEGER
);
CREATE INDEX servers_ip ON servers (ip);

CREATE TABLE enrollment_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id   INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    token       TEXT    NOT NULL UNIQUE,              -- hex SHA-256
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE performance_logs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id          INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    seq                INTEGER,
    agent_time         INTEGER NOT NULL,
    received_at        INTEGER NOT NULL,
    cpu_usage          REAL,
    ram_usage          REAL,
    disk_usage         REAL,
    load_average       REAL,
    uptime             INTEGER,
    response_time      REAL,
    network_rx         INTEGER,
    network_tx         INTEGER,
    disk_io_read       INTEGER,
    disk_io_write      INTEGER,
    network_rx_rate    REAL,
    network_tx_rate    REAL,
    disk_io_read_rate  REAL,
    disk_io_write_rate REAL,
    raw                TEXT    NOT NULL
);
CREATE UNIQUE INDEX performance_logs_seq ON performance_logs (server_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX performance_logs_time ON performance_logs (server_id, agent_time);

CREATE TABLE service_states (
    server_id  INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    sub_state  TEXT,
    since      INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    details    TEXT    NOT NULL,
    PRIMARY KEY (server_id, name)
);

CREATE TABLE service_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id   INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    from_status TEXT,
    to_status   TEXT    NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX service_history_server ON service_history (server_id, id);

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id  INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    source     TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    host_time  INTEGER,
    created_at INTEGER NOT NULL,
    status     TEXT    NOT NULL DEFAULT 'open'
);
CREATE INDEX alerts_server ON alerts (server_id, id);

-- Events outlive their server (server_id is cleared), so the log keeps the removal.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER REFERENCES servers (id) ON DELETE SET NULL,
    kind      TEXT    NOT NULL,
    severity  TEXT    NOT NULL,
    message   TEXT    NOT NULL,
    details   TEXT    NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX events_server ON events (server_id, id);

CREATE TABLE commands (
    id           TEXT    PRIMARY KEY,
    server_id    INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    type         TEXT    NOT NULL,
    args         TEXT    NOT NULL,
    issued_at    INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    issued_by    TEXT    NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'pending',
    delivered_at INTEGER,
    acked_at     INTEGER,
    output       TEXT,
    exit_code    INTEGER,
    host_time    INTEGER
);
CREATE INDEX commands_server ON commands (server_id, issued_at);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    secret       TEXT    NOT NULL,                     -- hex SHA-256
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
