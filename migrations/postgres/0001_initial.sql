-- Enclave metadata, PostgreSQL flavour (keep in step with ../sqlite/0001_initial.sql).
-- Ids are UUID strings; timestamps RFC 3339 UTC strings; JSON documents TEXT.

CREATE TABLE collections (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);

CREATE TABLE documents (
    id              TEXT PRIMARY KEY,
    collection_id   TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    source_uri      TEXT NOT NULL,
    external_id     TEXT,
    parent_id       TEXT REFERENCES documents (id) ON DELETE CASCADE,
    title           TEXT NOT NULL,
    mime_type       TEXT,
    sha256          TEXT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    error           TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}',
    tags            TEXT NOT NULL DEFAULT '[]',
    access          TEXT NOT NULL DEFAULT '[]',
    byte_size       BIGINT NOT NULL DEFAULT 0,
    page_count      BIGINT NOT NULL DEFAULT 0,
    chunk_count     BIGINT NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (collection_id, source_uri)
);
CREATE UNIQUE INDEX documents_external_id ON documents (collection_id, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX documents_parent ON documents (parent_id);
CREATE INDEX documents_status ON documents (collection_id, status);

CREATE TABLE document_versions (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    state       TEXT NOT NULL,
    error       TEXT,
    page_count  BIGINT NOT NULL DEFAULT 0,
    chunk_count BIGINT NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (document_id, version)
);
CREATE INDEX document_versions_state ON document_versions (state);

CREATE TABLE pages (
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    page_number BIGINT NOT NULL,
    char_start  BIGINT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (document_id, version, page_number)
);

CREATE TABLE chunks (
    id          TEXT PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    ordinal     BIGINT NOT NULL,
    text        TEXT NOT NULL,
    page_start  BIGINT NOT NULL,
    page_end    BIGINT NOT NULL,
    char_start  BIGINT NOT NULL,
    char_end    BIGINT NOT NULL,
    token_count BIGINT NOT NULL,
    section     TEXT,
    UNIQUE (document_id, version, ordinal)
);

CREATE TABLE ingest_runs (
    id              TEXT PRIMARY KEY,
    collection_id   TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    status          TEXT NOT NULL,
    files           BIGINT NOT NULL DEFAULT 0,
    ingested        BIGINT NOT NULL DEFAULT 0,
    unchanged       BIGINT NOT NULL DEFAULT 0,
    failed          BIGINT NOT NULL DEFAULT 0,
    pages           BIGINT NOT NULL DEFAULT 0,
    chunks          BIGINT NOT NULL DEFAULT 0
);
