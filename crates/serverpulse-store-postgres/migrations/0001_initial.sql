-- ServerPulse PostgreSQL schema, version 1: the same tables and columns as the SQLite
-- schema after its migration 10, in PostgreSQL's types. Times are BIGINT Unix
-- milliseconds (UTC); JSON is kept as TEXT, written and read by the hub.

CREATE TABLE servers (
    id                     BIGSERIAL PRIMARY KEY,
    name                   TEXT    NOT NULL,
    ip                     TEXT    NOT NULL,          -- canonical textual form of the parsed address
    created_at             BIGINT  NOT NULL,
    hostname               TEXT,
    agent_enabled          BOOLEAN NOT NULL DEFAULT TRUE,
    agent_id               TEXT UNIQUE,
    agent_token            TEXT UNIQUE,               -- hex SHA-256 of the agent's bearer token
    agent_status           TEXT    NOT NULL DEFAULT 'inactive'
                           CHECK (agent_status IN ('inactive', 'active', 'disconnected')),
    agent_version          TEXT,
    agent_last_heartbeat   BIGINT,
    agent_last_contact     BIGINT,
    agent_config           TEXT    NOT NULL DEFAULT '{}', -- system info (JSON)
    last_metrics           TEXT,                          -- flat metrics of the newest report (JSON)
    last_metrics_at        BIGINT,
    agent_settings         TEXT    NOT NULL DEFAULT '{}',
    agent_settings_version BIGINT  NOT NULL DEFAULT 0,
    tags                   TEXT    NOT NULL DEFAULT '[]'
);
CREATE INDEX servers_ip ON servers (ip);

CREATE TABLE enrollment_tokens (
    id          BIGSERIAL PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    token       TEXT   NOT NULL UNIQUE,               -- hex SHA-256
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX enrollment_tokens_server ON enrollment_tokens (server_id);

CREATE TABLE performance_logs (
    id                 BIGSERIAL PRIMARY KEY,
    server_id          BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    seq                BIGINT,
    agent_time         BIGINT NOT NULL,
    received_at        BIGINT NOT NULL,
    cpu_usage          DOUBLE PRECISION,
    ram_usage          DOUBLE PRECISION,
    disk_usage         DOUBLE PRECISION,
    load_average       DOUBLE PRECISION,
    uptime             BIGINT,
    response_time      DOUBLE PRECISION,
    network_rx         BIGINT,
    network_tx         BIGINT,
    disk_io_read       BIGINT,
    disk_io_write      BIGINT,
    network_rx_rate    DOUBLE PRECISION,
    network_tx_rate    DOUBLE PRECISION,
    disk_io_read_rate  DOUBLE PRECISION,
    disk_io_write_rate DOUBLE PRECISION,
    raw                TEXT   NOT NULL
);
CREATE UNIQUE INDEX performance_logs_seq ON performance_logs (server_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX performance_logs_time ON performance_logs (server_id, agent_time);

-- Unit names sort byte by byte, as in SQLite, whatever the database's locale.
CREATE TABLE service_states (
    server_id  BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name       TEXT   COLLATE "C" NOT NULL,
    status     TEXT   NOT NULL,
    sub_state  TEXT,
    since      BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    details    TEXT   NOT NULL,
    PRIMARY KEY (server_id, name)
);

CREATE TABLE service_history (
    id          BIGSERIAL PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name        TEXT   NOT NULL,
    from_status TEXT,
    to_status   TEXT   NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX service_history_server ON service_history (server_id, id);

-- Alert rules, the episode state of each (rule, server, subject), and the alert lifecycle.
CREATE TABLE alert_rules (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    definition TEXT    NOT NULL,                 -- the rule as JSON (serverpulse-alerting::Rule)
    builtin    BOOLEAN NOT NULL DEFAULT FALSE,   -- shipped defaults (editable, kept on upgrade)
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE alerts (
    id              BIGSERIAL PRIMARY KEY,
    server_id       BIGINT  NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    source          TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    details         TEXT    NOT NULL,
    host_time       BIGINT,
    created_at      BIGINT  NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'firing',
    rule_id         BIGINT REFERENCES alert_rules (id) ON DELETE SET NULL,
    subject         TEXT    NOT NULL DEFAULT '',
    value           DOUBLE PRECISION,
    threshold       DOUBLE PRECISION,
    started_at      BIGINT,
    updated_at      BIGINT,
    occurrences     BIGINT  NOT NULL DEFAULT 1,
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    ack_comment     TEXT,
    resolved_at     BIGINT,
    resolved_by     TEXT,                        -- 'recovery', 'agent' or the user's email
    silenced        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX alerts_server ON alerts (server_id, id);
CREATE INDEX alerts_status ON alerts (status, server_id);
CREATE INDEX alerts_open ON alerts (server_id) WHERE status <> 'resolved';

CREATE TABLE alert_states (
    rule_id   BIGINT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    subject   TEXT   NOT NULL,                   -- '' for the host, a mount point, a unit
    state     TEXT   NOT NULL,                   -- JSON (serverpulse-alerting::EpisodeState)
    alert_id  BIGINT REFERENCES alerts (id) ON DELETE SET NULL,
    PRIMARY KEY (rule_id, server_id, subject)
);
CREATE INDEX alert_states_server ON alert_states (server_id);
CREATE INDEX alert_states_alert ON alert_states (alert_id);

-- Events outlive their server (server_id is cleared), so the log keeps the removal.
CREATE TABLE events (
    id        BIGSERIAL PRIMARY KEY,
    server_id BIGINT REFERENCES servers (id) ON DELETE SET NULL,
    kind      TEXT   NOT NULL,
    severity  TEXT   NOT NULL,
    message   TEXT   NOT NULL,
    details   TEXT   NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX events_server ON events (server_id, id);

CREATE TABLE commands (
    id           TEXT   PRIMARY KEY,
    server_id    BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    type         TEXT   NOT NULL,
    args         TEXT   NOT NULL,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    issued_by    TEXT   NOT NULL,
    state        TEXT   NOT NULL DEFAULT 'pending',
    delivered_at BIGINT,
    acked_at     BIGINT,
    output       TEXT,
    exit_code    BIGINT,
    host_time    BIGINT
);
CREATE INDEX commands_server ON commands (server_id, issued_at);

-- E-mail addresses are unique whatever their case.
CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT   NOT NULL,
    role          TEXT   NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

CREATE TABLE api_tokens (
    id         TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    secret     TEXT   NOT NULL,                  -- hex SHA-256
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Notification channels, silences, and the durable outbox with every delivery attempt.
CREATE TABLE channels (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    definition TEXT   NOT NULL,      -- JSON (serverpulse-alerting::notify::Channel)
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE silences (
    id         BIGSERIAL PRIMARY KEY,
    definition TEXT   NOT NULL,      -- JSON (serverpulse-alerting::notify::Silence)
    created_by TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    ends_at    BIGINT                -- one-off silences: when they end; weekly ones: NULL
);

CREATE TABLE notifications (
    id              BIGSERIAL PRIMARY KEY,
    alert_id        BIGINT REFERENCES alerts (id) ON DELETE CASCADE,
    channel_id      BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    event           TEXT   NOT NULL,  -- firing, escalated, resolved, repeat, test
    status          TEXT   NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX notifications_alert ON notifications (alert_id, channel_id);
CREATE INDEX notifications_channel ON notifications (channel_id);

CREATE TABLE notification_attempts (
    id              BIGSERIAL PRIMARY KEY,
    notification_id BIGINT  NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    at              BIGINT  NOT NULL,
    ok              BOOLEAN NOT NULL,
    error           TEXT,
    duration_ms     BIGINT  NOT NULL
);
CREATE INDEX notification_attempts_of ON notification_attempts (notification_id);

-- Browser sessions: the SHA-256 of the cookie's secret (never the secret).
CREATE TABLE sessions (
    id         TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- History summed up per server in buckets of 5 minutes, 1 hour and 1 day: per metric
-- the minimum, maximum, sum, count and last of its values, and the bucket's sample count.
CREATE TABLE rollups (
    server_id BIGINT  NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    width     BIGINT  NOT NULL,   -- bucket width, ms
    start     BIGINT  NOT NULL,   -- a multiple of width, Unix ms (agent time)
    samples   BIGINT  NOT NULL,
    cpu_usage_min DOUBLE PRECISION, cpu_usage_max DOUBLE PRECISION, cpu_usage_sum DOUBLE PRECISION,
    cpu_usage_n BIGINT, cpu_usage_last DOUBLE PRECISION,
    ram_usage_min DOUBLE PRECISION, ram_usage_max DOUBLE PRECISION, ram_usage_sum DOUBLE PRECISION,
    ram_usage_n BIGINT, ram_usage_last DOUBLE PRECISION,
    disk_usage_min DOUBLE PRECISION, disk_usage_max DOUBLE PRECISION, disk_usage_sum DOUBLE PRECISION,
    disk_usage_n BIGINT, disk_usage_last DOUBLE PRECISION,
    load_average_min DOUBLE PRECISION, load_average_max DOUBLE PRECISION, load_average_sum DOUBLE PRECISION,
    load_average_n BIGINT, load_average_last DOUBLE PRECISION,
    network_rx_rate_min DOUBLE PRECISION, network_rx_rate_max DOUBLE PRECISION,
    network_rx_rate_sum DOUBLE PRECISION, network_rx_rate_n BIGINT, network_rx_rate_last DOUBLE PRECISION,
    network_tx_rate_min DOUBLE PRECISION, network_tx_rate_max DOUBLE PRECISION,
    network_tx_rate_sum DOUBLE PRECISION, network_tx_rate_n BIGINT, network_tx_rate_last DOUBLE PRECISION,
    disk_io_read_rate_min DOUBLE PRECISION, disk_io_read_rate_max DOUBLE PRECISION,
    disk_io_read_rate_sum DOUBLE PRECISION, disk_io_read_rate_n BIGINT, disk_io_read_rate_last DOUBLE PRECISION,
    disk_io_write_rate_min DOUBLE PRECISION, disk_io_write_rate_max DOUBLE PRECISION,
    disk_io_write_rate_sum DOUBLE PRECISION, disk_io_write_rate_n BIGINT, disk_io_write_rate_last DOUBLE PRECISION,
    PRIMARY KEY (server_id, width, start)
);

-- How far back each kind of history is complete (`width` 0: raw samples).
CREATE TABLE retention_horizons (
    width   BIGINT PRIMARY KEY,
    horizon BIGINT NOT NULL
);

-- 5-minute buckets that gained samples since their summaries were last computed.
CREATE TABLE rollup_dirty (
    server_id BIGINT NOT NULL,
    start     BIGINT NOT NULL,
    PRIMARY KEY (server_id, start)
);

-- Samples past the detail window, compacted: one chunk per server and day of agent
-- time (format: serverpulse_store::chunk), covering the day up to `until`.
CREATE TABLE history_chunks (
    server_id BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    start     BIGINT NOT NULL,
    until     BIGINT NOT NULL,
    samples   BIGINT NOT NULL,
    data      BYTEA  NOT NULL,
    PRIMARY KEY (server_id, start)
);

-- Defaults for every server; per-server or per-tag rules on the same metric override them.
INSERT INTO alert_rules (name, definition, builtin, created_at, updated_at) VALUES
 ('CPU', '{"name":"CPU","metric":"cpu","op":">","warning":80,"critical":95,"for":300,"recovery":75,"keep_firing_for":0,"scope":{},"enabled":true}', TRUE, 0, 0),
 ('Memory', '{"name":"Memory","metric":"memory","op":">","warning":85,"critical":95,"for":300,"recovery":80,"keep_firing_for":0,"scope":{},"enabled":true}', TRUE, 0, 0),
 ('Disk', '{"name":"Disk","metric":"disk:*","op":">","warning":90,"critical":95,"for":60,"recovery":88,"keep_firing_for":0,"scope":{},"enabled":true}', TRUE, 0, 0),
 ('Load per core', '{"name":"Load per core","metric":"load_per_core","op":">","warning":1.5,"critical":3,"for":300,"recovery":1.2,"keep_firing_for":0,"scope":{},"enabled":true}', TRUE, 0, 0),
 ('Service failed', '{"name":"Service failed","metric":"service:*","op":">=","critical":1,"for":0,"keep_firing_for":0,"scope":{},"enabled":true}', TRUE, 0, 0),
 ('Agent offline', '{"name":"Agent offline","metric":"agent_offline","op":">=","critical":1,"for":0,"keep_firing_for":0,"scope":{},"enabled":true}', TRUE, 0, 0);
