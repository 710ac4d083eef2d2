"""The history of a governance setting: every change kept, who, when, old -> new, why.

A monitor configuration, a rollout plan, a retrain policy and a validation
policy each decide what the platform does on its own, so each change is kept
forever in a table of the same shape (the service's migration creates it)::

    id bigserial, <subject> text, seq integer, <value> jsonb, previous jsonb,
    actor text, reason text, at timestamptz, UNIQUE (<subject>, seq)

:class:`SettingsHistory` appends to and pages through such a table;
:class:`SettingChangeOut` is how the APIs show one change (a subclass names
the setting's field: ``config``, ``plan``, ``policy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

import asyncpg
from pydantic import BaseModel, Field

from mloop.runtime.pagination import decode_cursor, encode_cursor

__all__ = ["SettingChange", "SettingChangeOut", "SettingsHistory"]


@dataclass(frozen=True)
class SettingChange:
    """One stored change; ``value`` or ``previous`` is None where no setting was stored."""

    id: int
    subject: str
    seq: int
    value: dict[str, Any] | None
    previous: dict[str, Any] | None
    actor: str
    reason: str | None
    at: datetime


class SettingChangeOut(BaseModel):
    """One change as an API shows it; a subclass adds the field named ``value_field``."""

    value_field: ClassVar[str] = "value"

    seq: int = Field(description="Per-subject sequence of changes of this setting", examples=[1])
    at: datetime
    actor: str = Field(examples=["user:olga"])
    reason: str | None
    previous: dict[str, Any] | None = Field(description="The setting before; null when none was stored")

    @classmethod
    def of(cls, change: SettingChange) -> Self:
        return cls.model_validate({
            "seq": change.seq, "at": change.at, "actor": change.actor, "reason": change.reason,
            "previous": change.previous, cls.value_field: change.value,
        })


@dataclass(frozen=True)
class SettingsHistory:
    """The history table of one setting: ``table`` keyed by ``subject_column``, the setting in ``value_column``.

    The names are the service's own constants, never input.
    """

    table: str
    value_column: str
    subject_column: str = "model"

    def _change(self, row: asyncpg.Record) -> SettingChange:
        return SettingChange(
            id=row["id"], subject=row[self.subject_column], seq=row["seq"], value=row[self.value_column],
            previous=row["previous"], actor=row["actor"], reason=row["reason"], at=row["at"],
        )

    async def append(
        self, conn: asyncpg.Connection, subject: str, value: dict[str, Any] | None,
        previous: dict[str, Any] | None, *, actor: str, reason: str | None,
    ) -> SettingChange:
        """Append a change as the subject's next ``seq``, in the caller's transaction.

        The caller serialises changes of one subject (a row lock or an advisory
        lock); two appends racing for the same ``seq`` would fail on the
        table's unique key.
        """
        t, s, v = self.table, self.subject_column, self.value_column
        row = await conn.fetchrow(
            f"""INSERT INTO {t} ({s}, seq, {v}, previous, actor, reason)
                VALUES ($1, COALESCE((SELECT max(seq) FROM {t} WHERE {s} = $1), 0) + 1, $2, $3, $4, $5)
                RETURNING *""",
            subject, value, previous, actor, reason,
        )
        assert row is not None
        return self._change(row)

    async def changes(
        self, conn: asyncpg.Connection | asyncpg.Pool, subject: str, *, after: int = 0, limit: int | None = None
    ) -> list[SettingChange]:
        """The subject's changes with an id above ``after``, oldest first (all of them without ``limit``)."""
        rows = await conn.fetch(
            f"SELECT * FROM {self.table} WHERE {self.subject_column} = $1 AND id > $2 ORDER BY id LIMIT $3",
            subject, after, limit,
        )
        return [self._change(r) for r in rows]

    async def page(
        self, conn: asyncpg.Connection | asyncpg.Pool, subject: str, page_token: str | None, page_size: int
    ) -> tuple[list[SettingChange], str | None]:
        """One page of the subject's changes, oldest first, and the token of the next page (None: the last).

        A ``page_token`` this API did not issue raises ``BadRequest`` (400)
        naming ``query.page_token``.
        """
        cursor = decode_cursor(page_token, i=int)
        after = cursor["i"] if cursor else 0
        rows = await self.changes(conn, subject, after=after, limit=page_size + 1)
        more = len(rows) > page_size
        rows = rows[:page_size]
        return rows, encode_cursor({"i": rows[-1].id}) if more else None
