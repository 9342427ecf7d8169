-- Order-safe projection (issue 13, docs/followup.md "Order"): every event that changed a
-- client's read models (a product re-rating: for each holder it changed), with its place in
-- its store's log (global position) and when it was recorded there: source order is each
-- store's log order, the stores merged by recorded time, as a rebuild from the stores applies
-- them. An event that arrives before a later one of its store (re-published after a broker
-- lost it) makes the projector re-project that client from this log.
CREATE TABLE fu_read.fu_client_log (
    event_id        uuid   NOT NULL,
    client_id       text   NOT NULL,
    recorded_ms     bigint NOT NULL,
    source_rank     int    NOT NULL,
    source          text,
    global_position bigint NOT NULL,  -- 0: applied without its store position
    envelope        jsonb  NOT NULL,
    PRIMARY KEY (client_id, event_id)
);
CREATE INDEX fu_client_log_order
    ON fu_read.fu_client_log (client_id, source_rank, global_position);
