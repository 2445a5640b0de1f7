-- captures: one row per captured request (one line of a capture file).
-- Key: capture_id (event_id is NOT unique in real data). Times are UTC.
CREATE OR REPLACE VIEW captures AS
SELECT * FROM captureq_captures;
