-- The durable ingest queue (keep in step with ../postgres/0003_jobs.sql). A worker claims a job
-- by taking its lease (lease_owner, lease_expires) and renews it by heartbeat; a job whose
-- lease ran out is claimed again by another worker. Failed attempts come back after a
-- backoff (run_after) until max_attempts, then the job is dead-lettered (status 'dead') with
-- its last error. Timestamps are RFC 3339 UTC strings of one width, so they compare as text.

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    document_id     TEXT,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    run_after       TEXT NOT NULL,
    lease_owner     TEXT,
    lease_expires   TEXT,
    progress_done   INTEGER NOT NULL DEFAULT 0,
    progress_total  INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    finished_at     TEXT
);
CREATE INDEX jobs_ready ON jobs (status, run_after);
CREATE INDEX jobs_document ON jobs (document_id);
