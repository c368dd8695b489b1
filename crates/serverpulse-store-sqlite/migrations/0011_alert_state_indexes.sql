-- Episode states are read per server on every report and cleared per alert when one is
-- resolved by hand; their primary key starts with the rule, so both scanned the whole
-- table (a profile at 2,000 servers found every report scanning 12,000 rows).
CREATE INDEX alert_states_server ON alert_states (server_id);
CREATE INDEX alert_states_alert ON alert_states (alert_id);
