-- The same table as migrations/sqlite/0003_iiif_cache.sql.
--
-- The IIIF render cache: one row per rendered response kept in the object
-- store, so the cache can be held to a size budget (least recently used
-- first out) and an original's renders removed with the last image that
-- has that original.
-- `last_used` is Unix milliseconds, like the job clocks: eviction orders by
-- it and hits compare it with plain integers on every database.

CREATE TABLE iiif_cache (
    storage_key   TEXT PRIMARY KEY,
    source_sha256 TEXT NOT NULL,     -- the original it was rendered from
    size          BIGINT NOT NULL,
    last_used     BIGINT NOT NULL
);

CREATE INDEX iiif_cache_last_used ON iiif_cache (last_used, storage_key);
CREATE INDEX iiif_cache_source ON iiif_cache (source_sha256);
