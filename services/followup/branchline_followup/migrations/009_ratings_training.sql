-- D-13 / D-15: every rating of every product (its approval's and each re-rating's, in force
-- from effective_at), so a holding is kept at the rating in force whatever order the product's
-- and the client's events arrive in, and a sale that arrives after a later re-rating still
-- makes the review that re-rating makes due.
CREATE TABLE fu_read.fu_product_ratings (
    product_id   text NOT NULL,
    event_id     uuid NOT NULL,
    risk         text NOT NULL,
    effective_at timestamptz NOT NULL,
    PRIMARY KEY (product_id, event_id)
);

-- D-14: training hours per member of staff (shortfalls are a D-12 measure), and the staff
-- followup has heard of (with the branch their latest staff event named, if any).
CREATE TABLE fu_read.fu_staff_training (
    event_id     uuid PRIMARY KEY,
    staff_id     text NOT NULL,
    hours        numeric NOT NULL,
    completed_at timestamptz NOT NULL
);
CREATE INDEX fu_staff_training_by_staff ON fu_read.fu_staff_training (staff_id, completed_at);

CREATE TABLE fu_read.fu_staff (
    staff_id  text PRIMARY KEY,
    branch_id text
);
