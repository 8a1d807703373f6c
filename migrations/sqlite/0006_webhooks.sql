-- The webhook outbox (keep in step with ../postgres/0006_webhooks.sql). Whatever changes a
-- document records its event here, in the metadata database; the server's deliverer claims due
-- rows with a lease (lease_owner, lease_expires), POSTs the payload and marks the row
-- 'delivered', or records the failed attempt and tries again at next_attempt_at (exponential
-- backoff) until it gives up ('failed'). payload is the JSON body sent, byte for byte.
-- Timestamps are RFC 3339 UTC strings of one width, so they compare as text.

CREATE TABLE webhook_deliveries (
    id                TEXT PRIMARY KEY,
    event             TEXT NOT NULL,
    document_id       TEXT,
    collection        TEXT,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    lease_owner       TEXT,
    lease_expires     TEXT,
    last_error        TEXT,
    last_status_code  INTEGER,
    created_at        TEXT NOT NULL,
    delivered_at      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
