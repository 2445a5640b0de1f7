-- outputs: one row per prediction inside an output payload, keyed by (capture_id, record_index),
-- aligned with the input record it answers. A single CSV score is _c0.
CREATE OR REPLACE VIEW outputs AS
SELECT * FROM captureq_outputs;
