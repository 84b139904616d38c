-- Easel's catalogue on PostgreSQL: the same tables and meanings as
-- migrations/sqlite (0001 + 0002), in PostgreSQL's types. Append-only.

CREATE TABLE images (
    id            TEXT PRIMARY KEY,
    bucket        TEXT NOT NULL DEFAULT 'default',
    name          TEXT,
    -- `name` lowercased by Easel, so `search` folds case alike on SQLite
    -- (whose LOWER folds only ASCII) and here.
    name_folded   TEXT,
    facet         TEXT,
    crop          TEXT,
    width         BIGINT,
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
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    deleted_at    TIMESTAMPTZ
);

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

CREATE TABLE media_assets (
    id                   BIGSERIAL PRIMARY KEY,
    image_id             TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    style                TEXT NOT NULL,
    storage_key          TEXT NOT NULL,
    size                 BIGINT NOT NULL,
    mimetype             TEXT NOT NULL,
    width                BIGINT NOT NULL,
    height               BIGINT NOT NULL,
    sha256               TEXT NOT NULL,
    upscaled             BOOLEAN NOT NULL DEFAULT FALSE,
    settings_fingerprint TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (image_id, style)
);
CREATE INDEX media_assets_storage_key ON media_assets (storage_key);
CREATE INDEX media_assets_fingerprint ON media_assets (settings_fingerprint);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    bucket      TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    name        TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE buckets (
    name            TEXT PRIMARY KEY,
    public_max_side BIGINT,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE batches (
    id          TEXT PRIMARY KEY,
    bucket      TEXT,
    filter      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    total       BIGINT NOT NULL DEFAULT 0,
    -- Set once no image is left to queue: from then on `total` is exact.
    queued_all  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    image_id    TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL DEFAULT 'render' CHECK (kind IN ('render', 'ingest')),
    batch_id    TEXT REFERENCES batches (id) ON DELETE SET NULL,
    priority    BIGINT NOT NULL DEFAULT 0,  -- 0 (interactive) runs before 1 (batch)
    status      TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    -- Retries for an outage of our own store: they back off like attempts
    -- but never use them up.
    outages     BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    run_after   BIGINT NOT NULL,
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_claimable ON jobs (status, priority, run_after, id);
-- One render of an image at a time: the claim skips an image that has a
-- running job, and this is the backstop when two claims race.
CREATE UNIQUE INDEX jobs_one_running_per_image ON jobs (image_id) WHERE status = 'running';
CREATE INDEX jobs_image ON jobs (image_id);
CREATE INDEX jobs_batch ON jobs (batch_id, status);
