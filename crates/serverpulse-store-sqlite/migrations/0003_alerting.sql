-- Alert rules, the episode state of each (rule, server, subject), and the alert lifecycle.

CREATE TABLE alert_rules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    definition TEXT    NOT NULL,                 -- the rule as JSON (serverpulse-alerting::Rule)
    builtin    INTEGER NOT NULL DEFAULT 0,       -- shipped defaults (editable, kept on upgrade)
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE alert_states (
    rule_id   INTEGER NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    subject   TEXT    NOT NULL,                  -- '' for the host, a mount point, a unit
    state     TEXT    NOT NULL,                  -- JSON (serverpulse-alerting::EpisodeState)
    alert_id  INTEGER REFERENCES alerts (id) ON DELETE SET NULL,
    PRIMARY KEY (rule_id, server_id, subject)
);

ALTER TABLE alerts ADD COLUMN rule_id INTEGER REFERENCES alert_rules (id) ON DELETE SET NULL;
ALTER TABLE alerts ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN value REAL;
ALTER TABLE alerts ADD COLUMN threshold REAL;
ALTER TABLE alerts ADD COLUMN started_at INTEGER;
ALTER TABLE alerts ADD COLUMN updated_at INTEGER;
ALTER TABLE alerts ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN acknowledged_at INTEGER;
ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
ALTER TABLE alerts ADD COLUMN ack_comment TEXT;
ALTER TABLE alerts ADD COLUMN resolved_at INTEGER;
ALTER TABLE alerts ADD COLUMN resolved_by TEXT;      -- 'recovery', 'agent' or the user's email
UPDATE alerts SET status = 'firing' WHERE status = 'open';
UPDATE alerts SET started_at = created_at, updated_at = created_at;
CREATE INDEX alerts_status ON alerts (status, server_id);

ALTER TABLE servers ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

-- Defaults for every server; per-server or per-tag rules on the same metric override them.
INSERT INTO alert_rules (name, definition, builtin, created_at, updated_at) VALUES
 ('CPU', '{"name":"CPU","metric":"cpu","op":">","warning":80,"critical":95,"for":300,"recovery":75,"keep_firing_for":0,"scope":{},"enabled":true}', 1, 0, 0),
 ('Memory', '{"name":"Memory","metric":"memory","op":">","warning":85,"critical":95,"for":300,"recovery":80,"keep_firing_for":0,"scope":{},"enabled":true}', 1, 0, 0),
 ('Disk', '{"name":"Disk","metric":"disk:*","op":">","warning":90,"critical":95,"for":60,"recovery":88,"keep_firing_for":0,"scope":{},"enabled":true}', 1, 0, 0),
 ('Load per core', '{"name":"Load per core","metric":"load_per_core","op":">","warning":1.5,"critical":3,"for":300,"recovery":1.2,"keep_firing_for":0,"scope":{},"enabled":true}', 1, 0, 0),
 ('Service failed', '{"name":"Service failed","metric":"service:*","op":">=","critical":1,"for":0,"keep_firing_for":0,"scope":{},"enabled":true}', 1, 0, 0),
 ('Agent offline', '{"name":"Agent offline","metric":"agent_offline","op":">=","critical":1,"for":0,"keep_firing_for":0,"scope":{},"enabled":true}', 1, 0, 0);
