-- drift: one row per feature and window (granularity 'window' = the whole monitored window,
-- 'hour' = each UTC hour) from the last monitor run: PSI, KS statistic and p-value,
-- Jensen-Shannon distance, Model Monitor's L-infinity distance, its threshold and the verdict.
CREATE OR REPLACE VIEW drift AS
SELECT * FROM captureq_drift;
