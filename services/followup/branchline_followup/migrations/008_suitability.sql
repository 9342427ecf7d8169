-- D-15 ongoing suitability: what each client holds, at the rating in force (a sale records
-- the shelf's rating; a re-rating updates every holder's row), so a lower reassessment or a
-- re-rating above a holder's tolerance finds the holdings that no longer fit.
CREATE TABLE fu_read.fu_holdings (
    client_id    text NOT NULL,
    product_id   text NOT NULL,
    product_risk text NOT NULL,
    since        timestamptz NOT NULL,
    PRIMARY KEY (client_id, product_id)
);
CREATE INDEX fu_holdings_by_product ON fu_read.fu_holdings (product_id);
