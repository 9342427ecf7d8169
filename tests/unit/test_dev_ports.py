"""The dev stack's default ports lie outside the kernel's ephemeral range (#12,
docs/dev-stack.md): there any program's outgoing connection may hold a port for a while, and
`branchline dev` then refuses to start ("port taken"). Checked against this machine's range
and, always, Linux's default and IANA's dynamic range (a developer's machine may differ)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from branchline_shared.settings import BranchlineSettings

pytestmark = pytest.mark.unit

LINUX_DEFAULT = (32768, 60999)
IANA_DYNAMIC = (49152, 65535)


def _ephemeral_ranges() -> list[tuple[int, int]]:
    ranges = [LINUX_DEFAULT, IANA_DYNAMIC]
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return ranges
    return [*ranges, (int(low), int(high))]


def _default_ports() -> dict[str, int]:
    """Every port the settings name by default: the ``*_port`` fields, and the port in each
    database URL and broker address (read from the fields, not the environment)."""
    ports: dict[str, int] = {}
    for name, field in BranchlineSettings.model_fields.items():
        default = field.default
        if name.endswith("_port"):
            ports[name] = int(default)
        elif name.endswith("_database_url"):
            port = urlsplit(default).port
            assert port is not None, name
            ports[name] = port
        elif name == "kafka_bootstrap":
            for address in default.split(","):
                ports[f"{name} {address}"] = int(address.rsplit(":", 1)[1])
    return ports


def test_every_default_port_lies_outside_the_ephemeral_range() -> None:
    ports = _default_ports()
    assert {
        "postgres_port",
        "broker_port",
        "audit_database_url",
        "kafka_bootstrap 127.0.0.1:9092",
    } <= set(ports)
    inside = {
        name: port
        for name, port in ports.items()
        for low, high in _ephemeral_ranges()
        if low <= port <= high
    }
    assert inside == {}


def test_the_database_urls_name_the_embedded_postgres_port() -> None:
    ports = _default_ports()
    urls = {name: port for name, port in ports.items() if name.endswith("_database_url")}
    assert set(urls) == {
        "intake_database_url",
        "followup_database_url",
        "audit_database_url",
        "keys_database_url",
    }
    assert set(urls.values()) == {ports["postgres_port"]}
    assert ports["kafka_bootstrap 127.0.0.1:9092"] == ports["broker_port"]
    assert ports["postgres_port"] not in (5432, 5433)  # a machine's own PostgreSQL
