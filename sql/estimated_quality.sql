-- estimated_quality: model quality estimated from the predictions alone (CBPE for binary
-- classifiers, DLE for regression) by the last estimate_quality run: one row per window
-- (granularity 'hour'/'day', 'window' = all of it) and metric, with its confidence band, the
-- realized value where labels exist, the reference's threshold and whether the band crossed it.
CREATE OR REPLACE VIEW estimated_quality AS
SELECT * FROM captureq_estimated_quality;
