-- Leaner event indexes, for ingest throughput: `events_by_end` is gone, so an appended
-- event writes the log and its (frame id, event id) index only. Retention by age finds the
-- old events through their frames instead (`frames_by_recent`): an event that ended before
-- the cutoff started before it too, so its frame was first seen before the cutoff.
--
-- (SQLite's version of this migration also replaces the frame id in the event log with an
-- integer frame key; PostgreSQL keeps the text, whose comparisons cost it less.)

DROP INDEX events_by_end;
