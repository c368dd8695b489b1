-- The last value of each metric in a bucket (the newest sample's, in agent time), so a
-- summary answers min, max, mean and last. Buckets summed up before this migration get
-- theirs when a sample next lands in them.
ALTER TABLE rollups ADD COLUMN cpu_usage_last REAL;
ALTER TABLE rollups ADD COLUMN ram_usage_last REAL;
ALTER TABLE rollups ADD COLUMN disk_usage_last REAL;
ALTER TABLE rollups ADD COLUMN load_average_last REAL;
ALTER TABLE rollups ADD COLUMN network_rx_rate_last REAL;
ALTER TABLE rollups ADD COLUMN network_tx_rate_last REAL;
ALTER TABLE rollups ADD COLUMN disk_io_read_rate_last REAL;
ALTER TABLE rollups ADD COLUMN disk_io_write_rate_last REAL;
