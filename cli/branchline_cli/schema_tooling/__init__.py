"""Tooling for the published event schemas (ADR-0004), run by ``branchline schemas`` and CI,
never by a service: the files of ``schemas/`` (:mod:`.files`), the AsyncAPI document
(:mod:`.asyncapi`), the compatibility diff (:mod:`.compatibility`) and the check
(:mod:`.check`). The runtime part (each type's JSON Schema) is
:mod:`branchline_shared.events.json_schema`.
"""
