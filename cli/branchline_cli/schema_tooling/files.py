"""The files ``branchline schemas generate`` writes into ``schemas/`` (ADR-0004).

* ``events/<type>/v<N>.json`` and ``envelope.json``: :mod:`branchline_shared.events.json_schema`;
* ``asyncapi.yaml``: an AsyncAPI 3.0 document of the topics, their keys, headers and messages
  (:mod:`.asyncapi`);
* ``index.json``: every published schema with its ``$id`` and path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

from branchline_cli.schema_tooling.asyncapi import TopicsLike, asyncapi_document
from branchline_shared.events.catalogue import CATALOGUE_VERSION
from branchline_shared.events.json_schema import (
    ENVELOPE_PATH,
    SCHEMA_BASE,
    envelope_schema,
    event_schema,
    event_schema_path,
    published_schemas,
)

ASYNCAPI_PATH = "asyncapi.yaml"
INDEX_PATH = "index.json"


def dump_json(document: Any) -> str:
    """The one text form of every generated JSON file (stable, so a diff means a change)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def dump_yaml(document: Any) -> str:
    text: str = yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
    return text


def schema_files(topics: TopicsLike, committed_paths: Iterable[str] = ()) -> dict[str, str]:
    """Every file the generator writes into ``schemas/`` (path → text). ``committed_paths``
    are the paths already there; older versions among them are listed in the index, never
    rewritten."""
    files = {
        event_schema_path(t, v): dump_json(event_schema(t)) for t, v in CATALOGUE_VERSION.items()
    }
    files[ENVELOPE_PATH] = dump_json(envelope_schema())
    files[ASYNCAPI_PATH] = dump_yaml(asyncapi_document(topics))
    index = {
        "envelope": {"$id": SCHEMA_BASE + ENVELOPE_PATH, "path": ENVELOPE_PATH},
        "asyncapi": {"path": ASYNCAPI_PATH},
        "catalogue_version": dict(sorted(CATALOGUE_VERSION.items())),
        "events": [
            {
                "type": s.event_type,
                "version": s.version,
                "current": s.current,
                "$id": s.schema_id,
                "path": s.path,
            }
            for s in published_schemas(committed_paths)
        ],
    }
    files[INDEX_PATH] = dump_json(index)
    return dict(sorted(files.items()))
