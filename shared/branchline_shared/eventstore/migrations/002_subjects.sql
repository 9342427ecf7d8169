-- Events of subjects other than a client (D-13 product shelf, D-14/D-16 staff) have no
-- client: their envelope names product_id or staff_id instead, and the outbox key is that id.
ALTER TABLE es_events ALTER COLUMN client_id DROP NOT NULL;
