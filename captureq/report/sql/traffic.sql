-- traffic: requests (captures) and records (input records) per UTC hour, endpoint and variant,
-- of one endpoint ($endpoint; NULL for every endpoint in the window).
WITH records AS (
    SELECT capture_id, count(*) AS records FROM inputs GROUP BY capture_id
)
SELECT
    date_trunc('hour', c.inference_time) AS hour,
    c.endpoint,
    c.variant,
    count(*) AS requests,
    coalesce(sum(r.records), 0)::BIGINT AS records
FROM captures AS c
LEFT JOIN records AS r USING (capture_id)
WHERE $endpoint IS NULL OR c.endpoint = $endpoint
GROUP BY ALL
ORDER BY hour, c.endpoint, c.variant
