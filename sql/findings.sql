-- Accepted findings: a known exception, accepted by someone for a reason until a date. Every
-- check reports a WARN or FAIL it covers as SUPPRESSED (not hidden), and assert_* functions do
-- not raise on it. Rows expired more than 90 days are deleted by accept_finding().
CREATE TABLE @extschema@.accepted_findings (
    "check"     text NOT NULL CHECK ("check" <> ''),
    object      text NOT NULL,
    reason      text NOT NULL CHECK (reason <> ''),
    accepted_by text NOT NULL DEFAULT current_user,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    until       timestamptz,
    PRIMARY KEY ("check", object)
);
COMMENT ON TABLE @extschema@.accepted_findings IS
  'Accepted findings: (check, object) exactly as a check reports them, why, who, until when (NULL: no end). Checks report a covered WARN/FAIL as SUPPRESSED. Kept by pg_dump.';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.accepted_findings', '');
COMMENT ON FUNCTION @extschema@.accept_finding(text, text, text, timestamptz) IS
  'Accepts the WARN/FAIL of check on object until a date (NULL: for good): reported as SUPPRESSED, not raised by assert_* functions. For runbook_admin.';
COMMENT ON FUNCTION @extschema@.withdraw_finding(text, text) IS
  'Withdraws an accepted finding; true when there was one. For runbook_admin.';
