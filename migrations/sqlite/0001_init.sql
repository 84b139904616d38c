-- Easel's catalogue on SQLite. Append-only: never edit a migration that has
-- shipped; add the next number. migrations/postgres/ mirrors this schema.
-- Sizes and dimensions are BIGINT so the PostgreSQL schema reads the same.
-- Times are RFC 3339 text in UTC; job clocks are Unix milliseconds so lease
-- arithmetic is plain integer comparison on every database.

CREATE TABLE images (
    id            TEXT PRIMARY KEY NOT NULL,
    bucket        TEXT NOT NULL DEFAULT 'default',
    name          TEXT,
    facet         TEXT,
    crop          TEXT,              -- "x,y,width,height" in oriented pixels
    width         BIGINT NOT NULL,   -- oriented
    height        BIGINT NOT NULL,
    size          BIGINT NOT NULL,   -- bytes of the original
    mimetype      TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    original_key  TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'ingesting'
                  CHECK (status IN ('ingesting', 'finished', 'error')),
    error         TEXT,
    error_code    TEXT,
    tags          TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
    string1       TEXT,
    string2       TEXT,
    string3       TEXT,
    number1       DOUBLE PRECISION,
    number2       DOUBLE PRECISION,
    number3       DOUBLE PRECISION,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    finished_at   TEXT,
    deleted_at    TEXT
);

CREATE INDEX images_bucket_created ON images (bucket, created_at);
CREATE INDEX images_sha256 ON images (sha256);

CREATE TABLE media_assets (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
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
    created_at           TEXT NOT NULL,
    UNIQUE (image_id, style)
);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id    TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    status      TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,             -- Unix ms; a running job past it is claimable
    run_after   BIGINT NOT NULL,    -- Unix ms; retries back off by moving it
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- The claim query scans only live jobs, oldest due first.
CREATE INDEX jobs_claimable ON jobs (status, run_after);
CREATE INDEX jobs_image ON jobs (image_id);
