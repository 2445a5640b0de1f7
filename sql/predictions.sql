-- predictions: each input record beside the output record that answers it (captureq_pairs) and,
-- when one has arrived, its ground truth: the latest label per id and record, matched on the
-- capture's inference_id, else its event_id. Output columns are prefixed output_ (_c0 ->
-- output_c0, label -> output_label); ground_truth is null while a record is unlabelled.
-- "Latest" label for an (id, record_index): the latest label_hour (the hour folder it was
-- uploaded to), then the latest source_modified (when its file was written: mtime, or the
-- object's LastModified on S3), then the later line in the file. The file's name only breaks an
-- exact tie of write times between two files, so that the choice is stable.
CREATE OR REPLACE VIEW predictions AS
WITH latest_labels AS (
    SELECT *
    FROM labels
    QUALIFY row_number() OVER (
        PARTITION BY event_id, record_index
        ORDER BY label_hour DESC, source_modified DESC NULLS LAST, source_file DESC,
                 line_number DESC
    ) = 1
)
SELECT
    p.*,
    l.ground_truth,
    l.ground_truth_value,
    l.label_hour
FROM captureq_pairs AS p
LEFT JOIN latest_labels AS l
    ON l.event_id = coalesce(p.inference_id, p.event_id) AND l.record_index = p.record_index;
