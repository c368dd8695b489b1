-- A counter of changes to agents' identities (credentials, enabled, removal), bumped by
-- whoever makes them (any hub, the CLI): hubs keep identities cached until it moves.
CREATE TABLE agent_changes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO agent_changes (id, version) VALUES (1, 0);

CREATE FUNCTION bump_agent_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_changes SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER agent_changes_on_update AFTER UPDATE OF agent_id, agent_token, agent_enabled ON servers
FOR EACH ROW WHEN (OLD.agent_id IS DISTINCT FROM NEW.agent_id OR OLD.agent_token IS DISTINCT FROM NEW.agent_token
                   OR OLD.agent_enabled IS DISTINCT FROM NEW.agent_enabled)
EXECUTE FUNCTION bump_agent_changes();

CREATE TRIGGER agent_changes_on_delete AFTER DELETE ON servers
FOR EACH ROW EXECUTE FUNCTION bump_agent_changes();
