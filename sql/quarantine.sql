-- quarantine: every line or payload captureq could not use, with file, line and reason.
-- stage 'file' = unreadable file, 'line' = the line is not a capture (counts against lines read),
-- 'input'/'output'/'label' = payload could not be decoded, 'align' = input/output counts differ.
CREATE OR REPLACE VIEW quarantine AS
SELECT * FROM captureq_quarantine;
