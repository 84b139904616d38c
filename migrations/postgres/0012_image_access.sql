-- Per-image access the DLCS way (issue 17). The same schema in SQLite
-- and PostgreSQL.

-- The longest edge a caller without a key may see: NULL follows the
-- bucket's style visibility, -1 is open to everyone, 0 is nothing.
ALTER TABLE images ADD COLUMN max_unauthorised BIGINT;
-- Opaque role URIs, a JSON array: a key holding one of them sees the
-- image above max_unauthorised without image:read.
ALTER TABLE images ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
-- The URL of the first ingest only (e.g. presigned), cleared once fetched;
-- origin_url stays the one a re-ingest uses. Never returned.
ALTER TABLE images ADD COLUMN initial_origin TEXT;
-- The batch whose job rendered the files now served (NULL: an upload,
-- edit or other non-batch render).
ALTER TABLE images ADD COLUMN batch_id TEXT;
CREATE INDEX images_batch ON images (bucket, batch_id);

-- Role URIs a key holds, space separated like its scopes.
ALTER TABLE api_keys ADD COLUMN roles TEXT NOT NULL DEFAULT '';
