-- The event log, the frame-summary and camera projections, and the counters `status`
-- reads. Times are Unix nanoseconds; a status is 0 unset, 1 ok, 2 error.

-- Positions are assigned by the store from counters.last_position, which never
-- decreases, so a position is never reused even after retention empties the log.
CREATE TABLE events (
    position INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL,
    frame_id TEXT NOT NULL,
    service TEXT NOT NULL,
    stage TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status INTEGER NOT NULL CHECK (status IN (0, 1, 2)),
    error_message TEXT,
    parent_span_id BLOB,
    camera_id TEXT,
    attributes TEXT,
    size_bytes INTEGER NOT NULL,
    CHECK (end_ns >= start_ns),
    CHECK (length(event_id) = 24)
);
-- One index serves both de-duplication and journey lookups: an event id names one span,
-- and a span belongs to one frame, so a re-delivered event always comes with the same
-- frame id. Frame ids sort by creation time, so new entries land at the right edge of
-- the index instead of at random pages (as a global index on random trace ids would),
-- which keeps the write volume per appended event small. A journey is read from this
-- range and its ~10 rows sorted by (start_ns, position).
CREATE UNIQUE INDEX events_by_frame ON events (frame_id, event_id);
CREATE INDEX events_by_end ON events (end_ns);

-- stages: a JSON array of [name, first start] pairs in order of first start.
CREATE TABLE frames (
    frame_id TEXT PRIMARY KEY,
    camera_id TEXT,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    events INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    stages TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX frames_by_recent ON frames (first_seen, frame_id);
CREATE INDEX frames_by_camera ON frames (camera_id, first_seen, frame_id);

-- histogram: the frames' total durations in log-linear buckets (see projection.rs).
CREATE TABLE cameras (
    camera_id TEXT PRIMARY KEY,
    frames INTEGER NOT NULL,
    failed_frames INTEGER NOT NULL,
    events INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    histogram BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE counters (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    events INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    last_position INTEGER NOT NULL
);
INSERT INTO counters (id, events, frames, bytes, last_position) VALUES (1, 0, 0, 0, 0);
