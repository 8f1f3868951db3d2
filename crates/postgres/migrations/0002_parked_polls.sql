-- Polls shared out among the replicas: work waiting for its next poll is
-- parked (released, owner and lease NULL) with the time that poll is due,
-- and any replica's claim scan takes it from then on.
-- Unix milliseconds by the clock of the replica that parked it; NULL for
-- every record that is not parked.
ALTER TABLE records ADD COLUMN due_at_ms bigint;
