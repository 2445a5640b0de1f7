-- inputs: one row per record inside an input payload, keyed by (capture_id, record_index).
-- CSV features are named _c0, _c1, ... (Model Monitor's convention); JSON fields keep their names.
CREATE OR REPLACE VIEW inputs AS
SELECT * FROM captureq_inputs;
