-- The journal: one row per request, keyed by its RequestKey's text form.
-- Runs with search_path set to the journal's schema.
CREATE TABLE records (
    -- RequestKey::encode: ["stack id","logical id","request id"].
    key text PRIMARY KEY,
    -- The Record as serde writes it.
    record json NOT NULL,
    -- "async", "sync" or "fc": sync answers wake waiting duplicates.
    channel text NOT NULL,
    -- When it was first accepted, Unix milliseconds (the record's own clock).
    accepted_at_ms bigint NOT NULL,
    -- Running, polling or undelivered: work remains.
    open boolean NOT NULL,
    -- Stage::Answered.
    answered boolean NOT NULL,
    -- The replica working on it; NULL once released.
    owner text,
    -- Raised by every claim: a write from an older epoch is refused.
    epoch bigint NOT NULL DEFAULT 1,
    -- The owner's claim lapses then (database time); NULL when released
    -- or closed.
    lease_expires_at timestamptz
) WITH (fillfactor = 80);

-- Open work, oldest first: recovery, claims.
CREATE INDEX records_open ON records (accepted_at_ms) WHERE open;
-- A replica's open work: renew, release.
CREATE INDEX records_owner ON records (owner) WHERE open;
-- Closed work by age: purge.
CREATE INDEX records_closed ON records (accepted_at_ms) WHERE NOT open;

-- A sync request's answer wakes the duplicates waiting for it on any
-- replica (PostgresStore::wait_for_answer). Only sync answers notify: every
-- NOTIFY takes a cluster-wide lock at commit, and only sync duplicates wait.
CREATE FUNCTION notify_answered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.answered', NEW.key);
    RETURN NULL;
END
$$;

CREATE TRIGGER records_answered_on_insert AFTER INSERT ON records
    FOR EACH ROW WHEN (NEW.answered AND NEW.channel = 'sync')
    EXECUTE FUNCTION notify_answered();

CREATE TRIGGER records_answered_on_update AFTER UPDATE ON records
    FOR EACH ROW WHEN (NEW.answered AND NOT OLD.answered AND NEW.channel = 'sync')
    EXECUTE FUNCTION notify_answered();
