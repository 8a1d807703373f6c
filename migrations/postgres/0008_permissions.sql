-- Permissions in the core (keep in step with ../sqlite/0008_permissions.sql).

-- A user who is disabled cannot sign in, and their sessions and keys stop working.
ALTER TABLE users ADD COLUMN disabled_at TEXT;
-- An API key that acts for a user has that user's permissions (never more than its own role);
-- a key without a user has its own role, grants and groups.
ALTER TABLE api_keys ADD COLUMN user_id TEXT;

-- Groups of users and API keys.
CREATE TABLE groups (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

-- member_kind: 'user' or 'key'; member_id: users.id or api_keys.id.
CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_kind TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    PRIMARY KEY (group_id, member_kind, member_id)
);
CREATE INDEX group_members_member ON group_members (member_kind, member_id);

-- A role (reader, editor, admin) for a user, a group or a key, on one collection
-- (collection_id) or on every collection (collection_id = '').
CREATE TABLE grants (
    subject_kind  TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    collection_id TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (subject_kind, subject_id, collection_id)
);
CREATE INDEX grants_collection ON grants (collection_id);

-- Who asked or searched what. question holds the text, a SHA-256 digest of it, or nothing
-- (audit.questions); retrieved and cited are JSON lists of chunk ids.
CREATE TABLE question_audit (
    id          TEXT PRIMARY KEY,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    actor_id    TEXT,
    endpoint    TEXT NOT NULL,
    collections TEXT NOT NULL DEFAULT '[]',
    question    TEXT,
    question_sha256 TEXT,
    retrieved   TEXT NOT NULL DEFAULT '[]',
    cited       TEXT NOT NULL DEFAULT '[]',
    refused     BIGINT,
    took_ms     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX question_audit_at ON question_audit (at);
CREATE INDEX question_audit_actor ON question_audit (actor_id);

-- Failed sign-ins per account and per address, for growing delays.
CREATE TABLE login_failures (
    key         TEXT PRIMARY KEY,
    failures    BIGINT NOT NULL,
    last_at     TEXT NOT NULL
);
