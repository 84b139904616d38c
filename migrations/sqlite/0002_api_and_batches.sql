-- The full Image API and batch re-render: API keys, per-bucket settings,
-- indexed tags, feed readiness, a version for ETags, origin ingest (an
-- image whose bytes are not fetched yet has no size or hash), and batches.
--
-- SQLite cannot relax NOT NULL in place, so `images` is rebuilt, and with
-- it the two tables that reference it (`media_assets`, `jobs`). sqlx runs
-- every SQLite migration inside a transaction (0.8 ignores
-- `-- no-transaction`), where `PRAGMA foreign_keys = OFF` is a no-op, and
-- dropping a parent table while foreign keys are on deletes its children's
-- rows (ON DELETE CASCADE). So the children are copied into tables that
-- reference the new `images` first, the old tables are dropped children
-- first, and the renames rewrite the references (SQLite >= 3.26 always
-- does). This works with foreign keys on or off.

CREATE TABLE images_v2 (
    id            TEXT PRIMARY KEY NOT NULL,
    bucket        TEXT NOT NULL DEFAULT 'default',
    name          TEXT,
    -- `name` lowercased by Easel (Unicode rules; SQLite's LOWER folds only
    -- ASCII): what `search` matches, alike on both databases.
    name_folded   TEXT,
    facet         TEXT,
    crop          TEXT,
    width         BIGINT,            -- NULL until an origin is fetched
    height        BIGINT,
    size          BIGINT,
    mimetype      TEXT,
    sha256        TEXT,
    original_key  TEXT,
    origin_url    TEXT,
    status        TEXT NOT NULL DEFAULT 'ingesting'
                  CHECK (status IN ('ingesting', 'finished', 'error')),
    error         TEXT,
    error_code    TEXT,
    tags          TEXT NOT NULL DEFAULT '[]',
    string1       TEXT,
    string2       TEXT,
    string3       TEXT,
    number1       DOUBLE PRECISION,
    number2       DOUBLE PRECISION,
    number3       DOUBLE PRECISION,
    feed_ready    BOOLEAN NOT NULL DEFAULT FALSE,
    feed_reasons  TEXT NOT NULL DEFAULT '{"reasons":["not rendered yet"],"warnings":[]}',
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    finished_at   TEXT,
    deleted_at    TEXT
);

INSERT INTO images_v2 (id, bucket, name, name_folded, facet, crop, width, height, size, mimetype, sha256,
    original_key, status, error, error_code, tags, string1, string2, string3, number1, number2,
    number3, created_at, updated_at, finished_at, deleted_at)
SELECT id, bucket, name, LOWER(name), facet, crop, width, height, size, mimetype, sha256,
    original_key, status, error, error_code, tags, string1, string2, string3, number1, number2,
    number3, created_at, updated_at, finished_at, deleted_at
FROM images;

CREATE TABLE batches (
    id          TEXT PRIMARY KEY NOT NULL,
    bucket      TEXT,
    filter      TEXT NOT NULL,               -- JSON, as requested
    fingerprint TEXT NOT NULL,               -- settings it renders to
    total       BIGINT NOT NULL DEFAULT 0,
    -- Set once no image is left to queue: from then on `total` is exact.
    queued_all  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE media_assets_v2 (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id             TEXT NOT NULL REFERENCES images_v2 (id) ON DELETE CASCADE,
    style                TEXT NOT NULL,
    storage_key          TEXT NOT NULL,
    size                 BIGINT NOT NULL,
    mimetype             TEXT NOT NULL,
    width                BIGINT NOT NULL,
    height               BIGINT NOT NULL,
    sha256               TEXT NOT NULL,
    upscaled             BOOLEAN NOT NULL DEFAULT FALSE,
    settings_fingerprint TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    UNIQUE (image_id, style)
);

INSERT INTO media_assets_v2 (id, image_id, style, storage_key, size, mimetype, width, height,
    sha256, upscaled, settings_fingerprint, created_at)
SELECT id, image_id, style, storage_key, size, mimetype, width, height,
    sha256, upscaled, settings_fingerprint, created_at
FROM media_assets;

CREATE TABLE jobs_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id    TEXT NOT NULL REFERENCES images_v2 (id) ON DELETE CASCADE,
    status      TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    -- Retries for an outage of our own store: they back off like attempts
    -- but never use them up.
    outages     BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,             -- Unix ms; a running job past it is claimable
    run_after   BIGINT NOT NULL,    -- Unix ms; retries back off by moving it
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'render' CHECK (kind IN ('render', 'ingest')),
    batch_id    TEXT REFERENCES batches (id) ON DELETE SET NULL,
    -- Interactive work (uploads, edits) goes before batch re-renders: 0 first.
    priority    BIGINT NOT NULL DEFAULT 0
);

INSERT INTO jobs_v2 (id, image_id, status, attempts, lease_owner, lease_until, run_after,
    last_error, created_at, updated_at)
SELECT id, image_id, status, attempts, lease_owner, lease_until, run_after,
    last_error, created_at, updated_at
FROM jobs;

-- Children first, so dropping `images` cascades into nothing.
DROP TABLE jobs;
DROP TABLE media_assets;
DROP TABLE images;
ALTER TABLE images_v2 RENAME TO images;
ALTER TABLE media_assets_v2 RENAME TO media_assets;
ALTER TABLE jobs_v2 RENAME TO jobs;

-- Listing: every query is per bucket, live or trashed, in one sort order.
CREATE INDEX images_live_created ON images (bucket, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX images_live_updated ON images (bucket, updated_at, id) WHERE deleted_at IS NULL;
-- The name sort is COALESCE(name, ''): the index must say the same.
CREATE INDEX images_live_name ON images (bucket, (COALESCE(name, '')), id) WHERE deleted_at IS NULL;
CREATE INDEX images_live_facet ON images (bucket, facet, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX images_trashed ON images (bucket, deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX images_sha256 ON images (sha256);
CREATE INDEX images_original_key ON images (original_key);

CREATE TABLE image_tags (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (image_id, tag)
);
CREATE INDEX image_tags_tag ON image_tags (tag, image_id);

INSERT INTO image_tags (image_id, tag)
SELECT images.id, json_each.value FROM images, json_each(images.tags);

CREATE INDEX media_assets_storage_key ON media_assets (storage_key);
CREATE INDEX media_assets_fingerprint ON media_assets (settings_fingerprint);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,   -- public part, shown in lists
    key_hash    TEXT NOT NULL UNIQUE,        -- sha256 of the whole secret
    bucket      TEXT NOT NULL,
    scopes      TEXT NOT NULL,               -- space separated
    name        TEXT,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE buckets (
    name            TEXT PRIMARY KEY NOT NULL,
    -- NULL: every style file is public; 0: key-only; N: styles whose
    -- longer side is at most N are public.
    public_max_side BIGINT,
    updated_at      TEXT NOT NULL
);

CREATE INDEX jobs_claimable ON jobs (status, priority, run_after, id);
-- One render of an image at a time: the claim skips an image that has a
-- running job, and this is the backstop when two claims race.
CREATE UNIQUE INDEX jobs_one_running_per_image ON jobs (image_id) WHERE status = 'running';
CREATE INDEX jobs_image ON jobs (image_id);
CREATE INDEX jobs_batch ON jobs (batch_id, status);
