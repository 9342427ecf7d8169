"""A JSON response rendered with orjson (FastAPI's own ORJSONResponse is deprecated)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    """Same bytes as ``JSONResponse`` up to spacing, several times cheaper to render: used on
    the hot write paths (see docs/performance.md)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
