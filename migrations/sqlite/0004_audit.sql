-- Who changed what in the corpus, and when (keep in step with ../postgres/0004_audit.sql).
-- Entries are only ever added. detail is a JSON object.

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    collection  TEXT,
    document_id TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_document ON audit_log (document_id);
