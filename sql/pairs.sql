-- captureq_pairs: every input record beside the output record that answers it (full outer join
-- on capture_id + record_index). Output columns are prefixed output_ (_c0 -> output_c0).
-- In Python captureq builds this table directly (captureq/pair.py); this SQL is what the duckdb
-- shell uses over a Parquet export, and what the tests hold pair.py to.
CREATE OR REPLACE VIEW captureq_pairs AS
SELECT
    coalesce(i.capture_id, o.capture_id) AS capture_id,
    coalesce(i.record_index, o.record_index) AS record_index,
    coalesce(i.endpoint, o.endpoint) AS endpoint,
    coalesce(i.variant, o.variant) AS variant,
    coalesce(i.event_id, o.event_id) AS event_id,
    coalesce(i.inference_id, o.inference_id) AS inference_id,
    coalesce(i.inference_time, o.inference_time) AS inference_time,
    i.* EXCLUDE (capture_id, record_index, endpoint, variant, event_id, inference_id, inference_time)
    {output_columns}
FROM inputs AS i
FULL OUTER JOIN outputs AS o
    ON i.capture_id = o.capture_id AND i.record_index = o.record_index;
