-- metrics: the numbers Model Monitor publishes to CloudWatch, one row per metric, statistic and
-- window (granularity 'hour' or 'window') from the last monitor / model_quality run:
-- feature_baseline_drift_<feature>, feature_non_null_<feature>, feature_data_<feature> (Average,
-- Min, Max, Sum, SampleCount) and one row per model-quality metric (accuracy, f1, mae, ...).
CREATE OR REPLACE VIEW metrics AS
SELECT * FROM captureq_metrics;
