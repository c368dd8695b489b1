-- Per-server agent settings set by administrators (JSON, validated by the hub) and their
-- revision, which agents report back in heartbeats.
ALTER TABLE servers ADD COLUMN agent_settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE servers ADD COLUMN agent_settings_version INTEGER NOT NULL DEFAULT 0;
