-- drift heat map: one cell per feature and UTC hour from a monitor run's hourly drift rows
-- (PSI, Jensen-Shannon, Model Monitor's distance and its verdict) with every constraint check
-- that failed in that hour (baseline_drift_check, completeness_check, data_type_check, ...).
WITH failed AS (
    SELECT window_start, feature_name AS feature,
           string_agg(DISTINCT constraint_check_type, ', ' ORDER BY constraint_check_type) AS checks
    FROM violations
    WHERE granularity = 'hour'
    GROUP BY ALL
)
SELECT
    d.feature,
    d.window_start AS hour,
    d.window_end AS hour_end,
    d.n,
    d.psi,
    d.js_distance,
    d.distance,
    d.threshold,
    d.drift,
    f.checks AS failed_checks,
    f.checks IS NOT NULL AS violation
FROM drift AS d
LEFT JOIN failed AS f USING (window_start, feature)
WHERE d.granularity = 'hour'
ORDER BY d.feature, hour
