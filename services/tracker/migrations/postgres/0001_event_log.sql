-- The event log, the frame-summary and camera projections, and the counters `status`
-- reads. Times are Unix nanoseconds; a status is 0 unset, 1 ok, 2 error.

-- Appends lock the counters row first, so they commit one at a time in position order:
-- once a position is visible, every smaller one is too.
CREATE TABLE events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id bytea NOT NULL,
    frame_id text COLLATE "C" NOT NULL,
    service text NOT NULL,
    stage text NOT NULL,
    start_ns bigint NOT NULL,
    end_ns bigint NOT NULL,
    status smallint NOT NULL CHECK (status IN (0, 1, 2)),
    error_message text,
    parent_span_id bytea,
    camera_id text COLLATE "C",
    attributes text,
    size_bytes bigint NOT NULL,
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
    frame_id text COLLATE "C" PRIMARY KEY,
    camera_id text COLLATE "C",
    first_seen bigint NOT NULL,
    last_seen bigint NOT NULL,
    duration bigint NOT NULL,
    events bigint NOT NULL,
    errors bigint NOT NULL,
    stages text NOT NULL
);
CREATE INDEX frames_by_recent ON frames (first_seen, frame_id);
CREATE INDEX frames_by_camera ON frames (camera_id, first_seen, frame_id);

-- histogram: the frames' total durations in log-linear buckets (see projection.rs).
CREATE TABLE cameras (
    camera_id text COLLATE "C" PRIMARY KEY,
    frames bigint NOT NULL,
    failed_frames bigint NOT NULL,
    events bigint NOT NULL,
    first_seen bigint NOT NULL,
    last_seen bigint NOT NULL,
    histogram bytea NOT NULL
);

CREATE TABLE counters (
    id integer PRIMARY KEY CHECK (id = 1),
    events bigint NOT NULL,
    frames bigint NOT NULL,
    bytes bigint NOT NULL,
    last_position bigint NOT NULL
);
INSERT INTO counters (id, events, frames, bytes, last_position) VALUES (1, 0, 0, 0, 0);
