-- Only episodes in progress (pending, firing) are kept from now on: one that ends
-- quietly is removed, and one that stays quiet is never written. Quiet episodes kept
-- by earlier hubs go: every server's were read back on every report, for nothing.
DELETE FROM alert_states WHERE alert_id IS NULL AND json_extract(state, '$.phase') = 'ok';
