"""What a probe reads of the followup read models (#12): one reader the self-check and
memory probes share."""

from __future__ import annotations

from typing import Any


def applied_reader(pool: Any) -> Any:
    """What the read models applied, read a keyset page at a time (``applied_in_pages`` over
    ``read_models_applied_page``, #12) where the checkout has them; on an older checkout (bench/
    copied into a scratch worktree) the whole read it had. The self-check never calls it; the
    consumer source asks for one."""
    from branchline_followup.adapters import reconciling
    from branchline_shared.reconcile import running

    page = getattr(reconciling, "read_models_applied_page", None)
    gather = getattr(running, "applied_in_pages", None)
    if page is None or gather is None:
        return lambda: reconciling.read_models_applied(pool)
    return lambda: gather(lambda after, limit: page(pool, after, limit))
