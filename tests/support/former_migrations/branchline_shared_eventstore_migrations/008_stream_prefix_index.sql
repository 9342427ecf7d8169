-- The ids of the streams that start with a prefix (the product shelf, GET /v1/products:
-- every `product-` stream), found by index (#12). `stream_id LIKE $1 || '%'` with the prefix
-- bound reads the whole of es_streams, one row per stream of every client, on any plan: no
-- plan turns a bound LIKE pattern into an index range, and the primary key's collation
-- (the database's) orders no prefix together. The statement now asks for the prefix's byte
-- range with the byte-order operators, which this index serves in any collation and on a
-- generic plan (as the audit trail's type families, audit migration 005). stream_id never
-- changes, so a stream's version bump can still be a HOT update.
CREATE INDEX es_streams_prefix ON es_streams (stream_id text_pattern_ops);
