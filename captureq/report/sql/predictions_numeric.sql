-- prediction distribution: per UTC hour and variant, quantiles of one endpoint's numeric
-- prediction column {prediction} (the model's score or value).
SELECT
    date_trunc('hour', inference_time) AS hour,
    variant,
    count(p) AS n,
    avg(p) AS mean,
    quantile_cont(p, 0.1) AS p10,
    quantile_cont(p, 0.25) AS p25,
    quantile_cont(p, 0.5) AS p50,
    quantile_cont(p, 0.75) AS p75,
    quantile_cont(p, 0.9) AS p90
FROM (
    SELECT inference_time, variant, try_cast({prediction} AS DOUBLE) AS p
    FROM predictions
    WHERE endpoint = $endpoint
)
GROUP BY ALL
ORDER BY hour, variant
