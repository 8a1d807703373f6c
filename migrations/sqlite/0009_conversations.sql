-- Conversations, feedback on answers and collections' own evaluation sets (keep in step with ../postgres/0009_conversations.sql).

-- A thread of questions and answers, seen only by its owner: 'user:ID', 'key:ID' or 'local'
-- (authentication off).
CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    title       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX conversations_owner ON conversations (owner, updated_at);

-- One question and its answer. question: as asked; standalone: what was searched and answered
-- when the question was a follow-up; answer: the answer as JSON (text, citations, passages,
-- rewrite, timings, model).
CREATE TABLE conversation_turns (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    at              TEXT NOT NULL,
    question        TEXT NOT NULL,
    standalone      TEXT,
    answer_text     TEXT NOT NULL,
    refused         INTEGER NOT NULL,
    collections     TEXT NOT NULL DEFAULT '[]',
    answer          TEXT NOT NULL,
    UNIQUE (conversation_id, position)
);

-- A reader's verdict on an answer, with what the answer was made of (kept when the thread is
-- deleted): helpful 1 or 0, an optional comment and an optional pick of the right source;
-- retrieved and cited are JSON lists of chunk ids.
CREATE TABLE answer_feedback (
    id              TEXT PRIMARY KEY,
    turn_id         TEXT NOT NULL,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    owner           TEXT NOT NULL,
    helpful         INTEGER NOT NULL,
    comment         TEXT,
    right_document_id TEXT,
    right_page      INTEGER,
    question        TEXT NOT NULL,
    answer_text     TEXT NOT NULL,
    refused         INTEGER NOT NULL,
    collections     TEXT NOT NULL DEFAULT '[]',
    retrieved       TEXT NOT NULL DEFAULT '[]',
    cited           TEXT NOT NULL DEFAULT '[]',
    model           TEXT NOT NULL,
    UNIQUE (turn_id, owner)
);
CREATE INDEX answer_feedback_at ON answer_feedback (at);

-- A collection's own evaluation set: questions with the document and pages that answer them,
-- or marked unanswerable (pages: JSON list of 1-based page numbers); feedback_id names the
-- verdict a case was made from.
CREATE TABLE eval_cases (
    id              TEXT PRIMARY KEY,
    collection_id   TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    question        TEXT NOT NULL,
    document_id     TEXT,
    pages           TEXT NOT NULL DEFAULT '[]',
    unanswerable    INTEGER NOT NULL,
    feedback_id     TEXT,
    created_at      TEXT NOT NULL,
    created_by      TEXT NOT NULL
);
CREATE INDEX eval_cases_collection ON eval_cases (collection_id);

-- Runs of a collection's evaluation set: the settings they ran with and the figures per
-- retrieval mode (both JSON), so that a change shows its effect.
CREATE TABLE eval_runs (
    id              TEXT PRIMARY KEY,
    collection_id   TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    at              TEXT NOT NULL,
    actor           TEXT NOT NULL,
    cases           INTEGER NOT NULL,
    settings        TEXT NOT NULL,
    report          TEXT NOT NULL
);
CREATE INDEX eval_runs_collection ON eval_runs (collection_id, at);
