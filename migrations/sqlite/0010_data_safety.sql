-- Data safety (issue 11).
--
-- `jobs.fingerprint`: the render settings a job must be rendered with (a
-- batch re-render's); a worker with other settings does not claim it. NULL
-- (uploads, edits): any worker renders it with its own settings.
--
-- `write_probes`: one row per probe, rewritten by `/readyz` so that it goes
-- red when the database cannot take a write (a full disk), not only when
-- it cannot answer a read.

ALTER TABLE jobs ADD COLUMN fingerprint TEXT;

CREATE TABLE write_probes (
    name TEXT PRIMARY KEY NOT NULL,
    at   BIGINT NOT NULL             -- Unix ms of the last probe
);
