-- A counter of changes to agents' identities (credentials, enabled, removal), bumped by
-- whoever makes them (this hub, the CLI): hubs keep identities cached until it moves.
CREATE TABLE agent_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO agent_changes (id, version) VALUES (1, 0);

CREATE TRIGGER agent_changes_on_update AFTER UPDATE OF agent_id, agent_token, agent_enabled ON servers
WHEN OLD.agent_id IS NOT NEW.agent_id OR OLD.agent_token IS NOT NEW.agent_token
     OR OLD.agent_enabled IS NOT NEW.agent_enabled
BEGIN
    UPDATE agent_changes SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER agent_changes_on_delete AFTER DELETE ON servers
BEGIN
    UPDATE agent_changes SET version = version + 1 WHERE id = 1;
END;
