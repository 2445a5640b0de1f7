-- quarantine summary: quarantined lines and payloads per stage and reason, with how many files
-- they came from and the first one (file and line) to look at.
SELECT
    stage,
    reason,
    count(*) AS entries,
    count(DISTINCT source_file) AS files,
    arg_min(source_file || ':' || line_number, source_file || lpad(line_number::VARCHAR, 12, '0'))
        AS first_seen
FROM quarantine
GROUP BY ALL
ORDER BY entries DESC, stage, reason
