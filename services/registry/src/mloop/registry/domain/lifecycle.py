"""Aliases, tags and a version's lifecycle.

* :func:`champion_moves`: a completed rollout makes its version ``champion``
  and keeps the former one as ``previous-champion``.
* :func:`check_alias_by_hand`, :func:`check_alias_target`: ``champion`` and
  ``previous-champion`` move only with a completed rollout, never by hand;
  other aliases point only at versions that passed validation and are not
  archived.
* :func:`check_archivable`, :func:`check_deletable`: a version that ever
  served traffic or carried an alias is archived, never deleted.
* :func:`check_tag_change`: tags that carry lineage or metrics into the gates
  (``mloop.lineage.*``, ``mloop.metric.*``) are set at registration and never
  changed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mloop.registry.errors import (
    InvalidInput,
    ProtectedAlias,
    VersionInUse,
    VersionNotEligible,
)

__all__ = [
    "CHAMPION",
    "FIXED_TAG_PREFIXES",
    "PREVIOUS_CHAMPION",
    "SYSTEM_ALIASES",
    "AliasMove",
    "VersionState",
    "VersionStatus",
    "champion_moves",
    "check_alias_by_hand",
    "check_alias_target",
    "check_archivable",
    "check_deletable",
    "check_tag_change",
]


CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
#: Aliases only a completed rollout moves (``apply_rollout_completed``), never a person.
SYSTEM_ALIASES = frozenset({CHAMPION, PREVIOUS_CHAMPION})
#: Tag namespaces whose values feed the gates at registration; they are fixed from then on.
FIXED_TAG_PREFIXES = ("mloop.lineage.", "mloop.metric.")


VersionStatus = Literal[
    "validated",  # every gate passed
    "validation-failed",  # at least one gate failed; cannot be promoted
    "pending-promotion",  # a promotion request awaits review
    "promoted",  # approved; a rollout is starting or running
    "production",  # its rollout completed: it is (or was) the champion
    "rolled-back",  # its rollout was rolled back
    "archived",
]


@dataclass(frozen=True)
class VersionState:
    """What the lifecycle rules need to know about a version."""

    model: str
    version: str
    status: VersionStatus
    validation_passed: bool
    served_traffic: bool = False
    aliases: tuple[str, ...] = ()
    has_promotion_requests: bool = False
    had_aliases: bool = False  # an alias pointed at it once (its alias history)


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version: str | None
    previous_version: str | None


def champion_moves(current_champion: str | None, current_previous: str | None, version: str) -> list[AliasMove]:
    """The alias moves when ``version``'s rollout completed: it becomes ``champion``
    and the former champion becomes ``previous-champion``. Nothing when it already is."""
    if current_champion == version:
        return []
    moves = [AliasMove(CHAMPION, version, current_champion)]
    if current_champion is not None and current_previous != current_champion:
        moves.append(AliasMove(PREVIOUS_CHAMPION, current_champion, current_previous))
    return moves


def check_alias_by_hand(alias: str) -> None:
    """Raise :class:`ProtectedAlias` for ``champion`` / ``previous-champion``, whatever the caller's roles:
    only a completed rollout after an approved promotion moves them."""
    if alias in SYSTEM_ALIASES:
        raise ProtectedAlias(f"{alias!r} is managed by the platform: a version becomes champion through an "
                             "approved promotion request and a completed rollout; it is never set or removed "
                             "by hand")


def check_alias_target(alias: str, version: VersionState) -> None:
    """Raise unless a person may point ``alias`` at ``version``.

    :class:`ProtectedAlias` for a platform-managed alias (:func:`check_alias_by_hand`);
    :class:`VersionNotEligible` for a version that failed validation or is archived.
    """
    check_alias_by_hand(alias)
    if not version.validation_passed or version.status == "validation-failed":
        raise VersionNotEligible(f"version {version.version} did not pass validation; an alias cannot point to it")
    if version.status == "archived":
        raise VersionNotEligible(f"version {version.version} is archived; an alias cannot point to it")


def check_tag_change(keys: Iterable[str]) -> None:
    """Raise :class:`InvalidInput` when a tag change touches a tag fixed at registration."""
    fixed = sorted(k for k in keys if k.startswith(FIXED_TAG_PREFIXES))
    if fixed:
        raise InvalidInput(f"tags {', '.join(fixed)} carry lineage or metrics and are fixed at registration; "
                           "register a new version instead", field="body.tags")


def check_archivable(version: VersionState) -> None:
    """Raise :class:`VersionInUse` while an alias points to the version or a promotion is pending."""
    if version.status == "archived":
        return
    if version.status == "pending-promotion":
        raise VersionInUse(f"version {version.version} has a pending promotion request; decide it first")
    if version.aliases:
        raise VersionInUse(
            f"version {version.version} is the target of {', '.join(sorted(version.aliases))}; move the aliases first"
        )


def check_deletable(version: VersionState) -> None:
    """Raise :class:`VersionInUse` for a version that served traffic, is or was aliased or has a promotion trail."""
    if version.served_traffic:
        raise VersionInUse(f"version {version.version} served traffic; it can be archived but never deleted")
    if version.aliases:
        raise VersionInUse(f"version {version.version} is the target of {', '.join(sorted(version.aliases))}")
    if version.had_aliases:
        raise VersionInUse(f"version {version.version} carried an alias; it can be archived but never deleted")
    if version.has_promotion_requests:
        raise VersionInUse(f"version {version.version} has a promotion trail; archive it instead")
