-- labels: one row per ground-truth record. event_id is the capture's inference_id when it had
-- one, else its event_id. ground_truth is the label text; ground_truth_value its number, if any.
CREATE OR REPLACE VIEW labels AS
SELECT * FROM captureq_labels;
