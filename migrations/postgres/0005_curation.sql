-- Curation: a document or a single chunk can be left out of retrieval without deleting it.
-- (The vector store's payload carries the same flag so that searches filter inside the index;
-- these columns are the source of truth and readers check them too.)
ALTER TABLE documents ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chunks ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
CREATE INDEX documents_title ON documents (collection_id, title);
-- What a curator set by hand ({"title": ..., "metadata": {...}}): it wins over what a re-index
-- reads from the content again.
ALTER TABLE documents ADD COLUMN curated TEXT NOT NULL DEFAULT '{}';
