-- Feed-grade delivery and dedup-safe deletion (issues 12 and 11).
-- migrations/postgres/0011_delivery.sql is the same schema in PostgreSQL's
-- types. Times here are Unix milliseconds, like the job clocks.

-- The feed file the render chose (the `feed` alias serves it) and its
-- longer side, which a bucket's style visibility is checked against when
-- the image is read: readiness depends on who may fetch the file.
ALTER TABLE images ADD COLUMN feed_style TEXT;
ALTER TABLE images ADD COLUMN feed_side BIGINT;

-- The JPEG quality a file was encoded at (NULL: not encoded by the engine,
-- such as the original or a byte-level strip): the feed budget may lower it.
ALTER TABLE media_assets ADD COLUMN quality BIGINT;

-- A bucket's own feed byte budget; NULL follows the server's, 0 is none.
ALTER TABLE buckets ADD COLUMN feed_max_bytes BIGINT;

-- Files a re-render replaced: still served at their versioned URLs until
-- `expires_at` (the grace period), and until then a reference that keeps
-- the object from being deleted.
CREATE TABLE retained_files (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id      TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    style         TEXT NOT NULL,
    storage_key   TEXT NOT NULL,
    size          BIGINT NOT NULL,
    mimetype      TEXT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    superseded_at BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX retained_files_image ON retained_files (image_id, style);
CREATE INDEX retained_files_key ON retained_files (storage_key);
CREATE INDEX retained_files_expiry ON retained_files (expires_at);

-- A writer's claim on an object it is about to rely on (put, or find
-- already there) before the row that refers to it commits. A deletion is
-- never started while a live claim exists, and a claim is never taken
-- while a deletion runs; a commit checks its claims are still live.
CREATE TABLE object_claims (
    storage_key TEXT NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (storage_key, holder)
);
CREATE INDEX object_claims_holder ON object_claims (holder);

-- Objects to delete once `due_at` has come, if nothing refers to them or
-- claims them then. `deleting_until` is set by the deleter that is
-- removing the object (claims wait for it, or take over once it lapsed).
CREATE TABLE object_deletions (
    storage_key    TEXT PRIMARY KEY NOT NULL,
    due_at         BIGINT NOT NULL,
    deleting_until BIGINT,
    reason         TEXT NOT NULL
);
CREATE INDEX object_deletions_due ON object_deletions (due_at);
