"""Unknown query parameters are an error, not silently ignored.

``GET /jobs?status=failed`` on a route whose filter is called ``state`` would
otherwise answer 200 with every job: the caller believes a filter was applied
that was not. Each route's declared query parameters are known from its
signature; any other name is a 422 naming ``query.<name>``. Compatibility APIs
whose clients send extra parameters by design (MLflow's ``order_by``) are
exempted by path prefix.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant

from mloop.runtime.problems import UnprocessableEntity

__all__ = ["reject_unknown_query"]

_known: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {getattr(p, "alias", None) or p.name for p in dependant.query_params}
    for dep in dependant.dependencies:
        names |= _query_names(dep)
    return names


def _declared(route: Any) -> frozenset[str] | None:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found = _known.get(id(route))
    if found is None:
        found = _known[id(route)] = frozenset(_query_names(dependant))
    return found


async def reject_unknown_query(request: Request) -> None:
    """An app-wide dependency: 422 for a query parameter the matched route does not declare."""
    if not request.query_params:
        return
    lenient: tuple[str, ...] = getattr(request.app.state, "lenient_query_prefixes", ())
    if lenient and request.url.path.startswith(lenient):
        return
    declared = _declared(request.scope.get("route"))
    if declared is None:
        return
    unknown = sorted({k for k in request.query_params if k not in declared})
    if unknown:
        raise UnprocessableEntity(
            f"query.{unknown[0]}: not a parameter of this operation"
            + (f"; it takes {', '.join(sorted(declared))}" if declared else "; it takes none"),
            errors=[{"field": f"query.{k}", "message": "unknown query parameter", "type": "extra_forbidden"}
                    for k in unknown],
        )
