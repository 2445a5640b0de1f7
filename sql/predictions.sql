-- predictions: each input record joined with the output record that answers it and, when one
-- has arrived, its ground truth (the latest label per id and record). Output columns are
-- prefixed output_ (_c0 -> output_c0, label -> output_label); ground_truth is null if unlabeled.
CREATE OR REPLACE VIEW predictions AS
WITH latest_labels AS (
    SELECT *
    FROM labels
    QUALIFY row_number() OVER (
        PARTITION BY event_id, record_index
        ORDER BY label_hour DESC, source_file DESC, line_number DESC
    ) = 1
),
joined AS (
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
        ON i.capture_id = o.capture_id AND i.record_index = o.record_index
)
SELECT
    j.*,
    l.ground_truth,
    l.ground_truth_value,
    l.label_hour
FROM joined AS j
LEFT JOIN latest_labels AS l
    ON l.event_id = coalesce(j.inference_id, j.event_id) AND l.record_index = j.record_index;
