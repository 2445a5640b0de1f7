-- captures: one row per captured request (one line of a capture file).
-- Key: capture_id (event_id is NOT unique in real data). Times are UTC.
-- inference_time_from_path (BOOLEAN) is true for records without eventMetadata.inferenceTime
-- (batch-transform capture): inference_time is then the start of the file's hour folder.
-- output_* hold endpointOutput, else captureData.batchTransformOutput (a batch transform's output).
CREATE OR REPLACE VIEW captures AS
SELECT * FROM captureq_captures;
