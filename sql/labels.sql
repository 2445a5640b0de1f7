-- labels: one row per ground-truth record. event_id is the capture's inference_id when it had
-- one, else its event_id. ground_truth is the label text exactly as stored (CSV: the record's
-- line, or its first field; " 2.5e0 " stays " 2.5e0 "); ground_truth_value its number, if any.
-- source_modified is when the label's file was written (mtime / S3 LastModified); predictions
-- uses it to pick the latest label. Rows also come from groundTruthData inside capture lines
-- (Model Monitor's merged records), with label_id = the capture's capture_id.
CREATE OR REPLACE VIEW labels AS
SELECT * FROM captureq_labels;
