-- History summed up per server in buckets of 5 minutes, 1 hour and 1 day: per metric the
-- minimum, maximum, sum and count of its non-null values (the mean is sum / count), and
-- the bucket's sample count. Each bucket is recomputed whenever a sample lands in it
-- (5 min from the raw samples, 1 h from the 5 min buckets, 1 d from the 1 h ones), so it
-- always equals a recomputation from scratch. Long chart ranges read these.
CREATE TABLE rollups (
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    width     INTEGER NOT NULL,   -- bucket width, ms
    start     INTEGER NOT NULL,   -- a multiple of width, Unix ms (agent time)
    samples   INTEGER NOT NULL,
    cpu_usage_min REAL, cpu_usage_max REAL, cpu_usage_sum REAL, cpu_usage_n INTEGER,
    ram_usage_min REAL, ram_usage_max REAL, ram_usage_sum REAL, ram_usage_n INTEGER,
    disk_usage_min REAL, disk_usage_max REAL, disk_usage_sum REAL, disk_usage_n INTEGER,
    load_average_min REAL, load_average_max REAL, load_average_sum REAL, load_average_n INTEGER,
    network_rx_rate_min REAL, network_rx_rate_max REAL, network_rx_rate_sum REAL, network_rx_rate_n INTEGER,
    network_tx_rate_min REAL, network_tx_rate_max REAL, network_tx_rate_sum REAL, network_tx_rate_n INTEGER,
    disk_io_read_rate_min REAL, disk_io_read_rate_max REAL, disk_io_read_rate_sum REAL, disk_io_read_rate_n INTEGER,
    disk_io_write_rate_min REAL, disk_io_write_rate_max REAL, disk_io_write_rate_sum REAL, disk_io_write_rate_n INTEGER,
    PRIMARY KEY (server_id, width, start)
) WITHOUT ROWID;

-- Existing history, summed up once.
INSERT INTO rollups
SELECT server_id, 300000, (agent_time / 300000) * 300000, COUNT(*),
    MIN(cpu_usage), MAX(cpu_usage), SUM(cpu_usage), COUNT(cpu_usage),
    MIN(ram_usage), MAX(ram_usage), SUM(ram_usage), COUNT(ram_usage),
    MIN(disk_usage), MAX(disk_usage), SUM(disk_usage), COUNT(disk_usage),
    MIN(load_average), MAX(load_average), SUM(load_average), COUNT(load_average),
    MIN(network_rx_rate), MAX(network_rx_rate), SUM(network_rx_rate), COUNT(network_rx_rate),
    MIN(network_tx_rate), MAX(network_tx_rate), SUM(network_tx_rate), COUNT(network_tx_rate),
    MIN(disk_io_read_rate), MAX(disk_io_read_rate), SUM(disk_io_read_rate), COUNT(disk_io_read_rate),
    MIN(disk_io_write_rate), MAX(disk_io_write_rate), SUM(disk_io_write_rate), COUNT(disk_io_write_rate)
FROM performance_logs WHERE agent_time >= 0 GROUP BY server_id, (agent_time / 300000);
INSERT INTO rollups
SELECT server_id, 3600000, (start / 3600000) * 3600000, SUM(samples),
    MIN(cpu_usage_min), MAX(cpu_usage_max), SUM(cpu_usage_sum), SUM(cpu_usage_n),
    MIN(ram_usage_min), MAX(ram_usage_max), SUM(ram_usage_sum), SUM(ram_usage_n),
    MIN(disk_usage_min), MAX(disk_usage_max), SUM(disk_usage_sum), SUM(disk_usage_n),
    MIN(load_average_min), MAX(load_average_max), SUM(load_average_sum), SUM(load_average_n),
    MIN(network_rx_rate_min), MAX(network_rx_rate_max), SUM(network_rx_rate_sum), SUM(network_rx_rate_n),
    MIN(network_tx_rate_min), MAX(network_tx_rate_max), SUM(network_tx_rate_sum), SUM(network_tx_rate_n),
    MIN(disk_io_read_rate_min), MAX(disk_io_read_rate_max), SUM(disk_io_read_rate_sum), SUM(disk_io_read_rate_n),
    MIN(disk_io_write_rate_min), MAX(disk_io_write_rate_max), SUM(disk_io_write_rate_sum), SUM(disk_io_write_rate_n)
FROM rollups WHERE width = 300000 GROUP BY server_id, (start / 3600000);
INSERT INTO rollups
SELECT server_id, 86400000, (start / 86400000) * 86400000, SUM(samples),
    MIN(cpu_usage_min), MAX(cpu_usage_max), SUM(cpu_usage_sum), SUM(cpu_usage_n),
    MIN(ram_usage_min), MAX(ram_usage_max), SUM(ram_usage_sum), SUM(ram_usage_n),
    MIN(disk_usage_min), MAX(disk_usage_max), SUM(disk_usage_sum), SUM(disk_usage_n),
    MIN(load_average_min), MAX(load_average_max), SUM(load_average_sum), SUM(load_average_n),
    MIN(network_rx_rate_min), MAX(network_rx_rate_max), SUM(network_rx_rate_sum), SUM(network_rx_rate_n),
    MIN(network_tx_rate_min), MAX(network_tx_rate_max), SUM(network_tx_rate_sum), SUM(network_tx_rate_n),
    MIN(disk_io_read_rate_min), MAX(disk_io_read_rate_max), SUM(disk_io_read_rate_sum), SUM(disk_io_read_rate_n),
    MIN(disk_io_write_rate_min), MAX(disk_io_write_rate_max), SUM(disk_io_write_rate_sum), SUM(disk_io_write_rate_n)
FROM rollups WHERE width = 3600000 GROUP BY server_id, (start / 86400000);
