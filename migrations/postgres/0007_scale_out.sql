-- Several processes on shared stores (keep in step with the other flavour).
-- When the process writing a version last showed it was alive (RFC 3339 UTC). With stores
-- shared by several processes, a repair treats an `indexing` version as interrupted only when
-- its writer has been silent for longer than the lease (worker.lease_secs).
ALTER TABLE document_versions ADD COLUMN alive_at TEXT;

-- The worker that claimed a job last, kept after the job ends (which process ran it).
ALTER TABLE jobs ADD COLUMN last_worker TEXT;
