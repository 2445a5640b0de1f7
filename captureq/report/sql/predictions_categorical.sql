-- prediction distribution: per UTC hour and variant, the share of each predicted value of one
-- endpoint's non-numeric prediction column {prediction}.
WITH counts AS (
    SELECT
        date_trunc('hour', inference_time) AS hour,
        variant,
        CAST({prediction} AS VARCHAR) AS prediction,
        count(*) AS n
    FROM predictions
    WHERE endpoint = $endpoint
    GROUP BY ALL
)
SELECT hour, variant, prediction, n, n / sum(n) OVER (PARTITION BY hour, variant) AS share
FROM counts
ORDER BY hour, variant, prediction
