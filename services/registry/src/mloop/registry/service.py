"""The registry's use cases, each one Postgres transaction.

Every write reads what it needs through ``store``, lets ``domain`` decide,
writes the new state through ``store`` and enqueues its events in the
outbox — all in the same transaction, so state and events never disagree.
Both entry points use it: HTTP routes (``api*.py``, ``mlflow_api.py``)
and Kafka handlers (``handlers.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from mloop.contracts.envelope import Event, new_event, uuid7
from mloop.contracts.payloads import (
    AliasChanged,
    FeatureSchema,
    Lineage,
    ModelPromoted,
    ModelRegistered,
    ModelValidated,
    PromotionRequested,
    PromotionReviewed,
    RolloutCompleted,
    RolloutRolledBack,
    ValidationPolicyChanged,
    VersionRetired,
)
from mloop.contracts.topics import spec_for
from mloop.registry import domain, store
from mloop.registry.domain import CHAMPION, PREVIOUS_CHAMPION, Champion, Decision, Policy, VersionState
from mloop.registry.errors import (
    AliasNotFound,
    ConflictError,
    InvalidInput,
    ModelAlreadyExists,
    ModelNotFound,
    PromotionRequestNotFound,
    VersionNotFound,
)
from mloop.registry.metrics import RegistryMetrics
from mloop.registry.schemas import (
    AliasMoveOut,
    AliasOut,
    ModelCreate,
    ModelOut,
    PolicyChange,
    PolicyView,
    PromotionRequestOut,
    RegistrationOut,
    ReviewOut,
    RolloutOut,
    ValidationOut,
    VersionDetail,
    VersionOut,
    VersionRegistration,
)
from mloop.runtime import outbox
from mloop.runtime.auth import Principal
from mloop.runtime.errors import PermanentError

__all__ = ["DEFAULT_SCOPE", "MAX_EVENT_BYTES", "Registry"]

DEFAULT_SCOPE = "default"
#: The largest event the registry publishes: the ``model-registered`` topic's
#: message limit (large training profiles), less a margin for headers.
MAX_EVENT_BYTES = int(spec_for("model-registered").config["max.message.bytes"]) - 64 * 1024


def _model_scope(model: str) -> str:
    return f"model:{model}"


def _str(v: int | None) -> str | None:
    return None if v is None else str(v)


@dataclass(frozen=True)
class Registry:
    """The service layer; ``source`` is the CloudEvents source of what it publishes."""

    source: str
    metrics: RegistryMetrics | None = field(default=None, compare=False)

    def _event(self, topic: str, payload: Any, actor: str) -> Event[Any]:
        return new_event(topic, payload, source=self.source, actor=actor)

    # ------------------------------------------------------------------ models

    async def create_model(self, pool: asyncpg.Pool, who: Principal, body: ModelCreate) -> ModelOut:
        async with pool.acquire() as conn:
            row = await store.insert_model(conn, body.name, body.description, body.tags, who.actor)
        if row is None:
            raise ModelAlreadyExists(body.name)
        return ModelOut(**_model_fields(row))

    async def get_model(self, conn: asyncpg.Connection, name: str) -> ModelOut:
        row = await store.get_model(conn, name)
        if row is None:
            raise ModelNotFound(name)
        return (await self.model_views(conn, [row]))[0]

    async def model_views(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[ModelOut]:
        names = [r["name"] for r in rows]
        aliases = await store.model_aliases(conn, names)
        latest = await store.latest_versions(conn, names)
        return [
            ModelOut(
                **_model_fields(r),
                latest_version=_str(latest[r["name"]]["version"]) if r["name"] in latest else None,
                aliases={a: str(v) for a, v in aliases[r["name"]].items()},
            )
            for r in rows
        ]

    async def update_model(
        self, pool: asyncpg.Pool, name: str, *, description: str | None, set_description: bool,
        tags: Mapping[str, str | None] | None,
    ) -> ModelOut:
        async with pool.acquire() as conn, conn.transaction():
            row = await store.update_model(conn, name, description=description, set_description=set_description,
                                           tags=tags)
            if row is None:
                raise ModelNotFound(name)
            return (await self.model_views(conn, [row]))[0]

    async def rename_model(self, pool: asyncpg.Pool, name: str, new_name: str) -> ModelOut:
        """Rename a model that has no versions and no policy history yet.

        Every event is keyed by the model's name (the monitor's references,
        the rollout's routing table, the ledger's chains), so once a version
        or a policy change was published the name is final: raises
        :class:`ConflictError` then, :class:`ModelAlreadyExists` when
        ``new_name`` is taken, :class:`ModelNotFound`.
        """
        async with pool.acquire() as conn, conn.transaction():
            row = await store.get_model(conn, name, for_update=True)
            if row is None:
                raise ModelNotFound(name)
            if new_name == name:
                return (await self.model_views(conn, [row]))[0]
            if row["last_version"] > 0 or await store.POLICY_HISTORY.changes(conn, _model_scope(name), limit=1):
                raise ConflictError(f"model {name!r} has versions or a policy history published under its name; "
                                    "its name is final (create a new model instead)")
            renamed = await store.rename_model(conn, name, new_name)
            if renamed is None:
                raise ModelAlreadyExists(new_name)
            return (await self.model_views(conn, [renamed]))[0]

    async def delete_model(self, pool: asyncpg.Pool, who: Principal, name: str) -> None:
        """Delete a model with every version, when each version could be deleted on its own.

        Raises :class:`VersionInUse` naming the first version that served,
        carried an alias or has a promotion trail, :class:`ConflictError` for a
        model whose policy was changed (that history stays), :class:`ModelNotFound`.
        """
        async with pool.acquire() as conn, conn.transaction():
            if await store.get_model(conn, name, for_update=True) is None:
                raise ModelNotFound(name)
            if await store.POLICY_HISTORY.changes(conn, _model_scope(name), limit=1):
                raise ConflictError(f"model {name!r} has a validation-policy history; it cannot be deleted")
            rows = await store.search_versions(conn, store.VersionFilter(model=name), after_id=None,
                                               limit=1_000_000)
            for row in rows:
                domain.check_deletable(await self._state(conn, row))
            await store.delete_model(conn, name)
            for row in rows:
                await self._retired(conn, who, name, row["version"], "deleted")

    # ------------------------------------------------------------------ policies

    async def policy_for(self, conn: asyncpg.Connection, model: str | None) -> PolicyView:
        default = Policy.model_validate(await store.get_policy(conn, DEFAULT_SCOPE) or {})
        override = (await store.get_policy(conn, _model_scope(model)) or {}) if model else {}
        return PolicyView(model=model, default=default, override=override,
                          effective=domain.effective_policy(default, override))

    async def _policy_changed(
        self, conn: asyncpg.Connection, who: Principal, model: str | None, stored: Mapping[str, Any],
        reason: str | None, *, removed: bool = False,
    ) -> PolicyView:
        view = await self.policy_for(conn, model)
        await outbox.enqueue(conn, self._event("validation-policy-changed", ValidationPolicyChanged(
            model=model or "*", scope="model" if model else "default", policy=dict(stored),
            effective=view.effective.model_dump(mode="json"), removed=removed, changed_by=who.actor, reason=reason,
        ), who.actor))
        return view

    async def put_default_policy(
        self, pool: asyncpg.Pool, who: Principal, policy: Policy, reason: str | None = None
    ) -> PolicyView:
        """Replace the default policy; the change and ``reason`` go to its history and its event."""
        async with pool.acquire() as conn, conn.transaction():
            doc = policy.model_dump(mode="json")
            await self._keep_change(conn, who, DEFAULT_SCOPE, doc, reason)
            await store.put_policy(conn, DEFAULT_SCOPE, doc, who.actor)
            return await self._policy_changed(conn, who, None, doc, reason)

    async def put_model_policy(
        self, pool: asyncpg.Pool, who: Principal, model: str, override: Mapping[str, Any], reason: str | None = None
    ) -> PolicyView:
        """Replace a model's override, as :meth:`put_default_policy`; :class:`ModelNotFound`, or a
        validation error for an override the default policy cannot take."""
        async with pool.acquire() as conn, conn.transaction():
            if await store.get_model(conn, model, for_update=True) is None:
                raise ModelNotFound(model)
            default = Policy.model_validate(await store.get_policy(conn, DEFAULT_SCOPE) or {})
            domain.effective_policy(default, override)  # refuses an invalid override
            await self._keep_change(conn, who, _model_scope(model), dict(override), reason)
            await store.put_policy(conn, _model_scope(model), dict(override), who.actor)
            return await self._policy_changed(conn, who, model, override, reason)

    async def delete_model_policy(
        self, pool: asyncpg.Pool, who: Principal, model: str, reason: str | None = None
    ) -> PolicyView:
        async with pool.acquire() as conn, conn.transaction():
            if await store.get_model(conn, model, for_update=True) is None:
                raise ModelNotFound(model)
            scope = _model_scope(model)
            await store.lock_policy(conn, scope)
            previous = await store.get_policy(conn, scope)
            if await store.delete_policy(conn, scope):
                await store.POLICY_HISTORY.append(conn, scope, None, previous, actor=who.actor, reason=reason)
            return await self._policy_changed(conn, who, model, {}, reason, removed=True)

    async def policy_history(self, conn: asyncpg.Connection, model: str | None) -> list[PolicyChange]:
        """Every change of the default policy (``model`` None) or of a model's override, oldest first."""
        if model is not None and await store.get_model(conn, model) is None:
            raise ModelNotFound(model)
        changes = await store.POLICY_HISTORY.changes(conn, _model_scope(model) if model else DEFAULT_SCOPE)
        return [PolicyChange.of(c) for c in changes]

    async def _keep_change(
        self, conn: asyncpg.Connection, who: Principal, scope: str, policy: dict[str, Any], reason: str | None
    ) -> None:
        """Append the change about to be stored to the policy's history (before and after, and why)."""
        await store.lock_policy(conn, scope)
        previous = await store.get_policy(conn, scope)
        await store.POLICY_HISTORY.append(conn, scope, policy, previous, actor=who.actor, reason=reason)

    # ------------------------------------------------------------------ versions

    async def _champion(self, conn: asyncpg.Connection, model: str) -> Champion | None:
        v = await store.get_alias(conn, model, CHAMPION)
        if v is None:
            return None
        row = await store.get_version(conn, model, v)
        if row is None:  # pragma: no cover - the foreign key prevents it
            return None
        return Champion(
            version=str(v), metrics=row["metrics"],
            features=FeatureSchema.model_validate(row["lineage"].get("features") or {}),
        )

    async def register_version(
        self, pool: asyncpg.Pool, who: Principal, model: str, body: VersionRegistration,
        *, run_id: str | None = None, run_link: str | None = None,
    ) -> RegistrationOut:
        """Number, validate and store a version; publish ``model-registered`` and ``model-validated``.

        Raises :class:`ModelNotFound`. Failing gates are not an error: the
        version is stored with status ``validation-failed``.
        """
        async with pool.acquire() as conn, conn.transaction():
            number = await store.next_version_number(conn, model)  # locks the model until commit
            if number is None:
                raise ModelNotFound(model)
            policy = (await self.policy_for(conn, model)).effective
            result = domain.validate(
                lineage=body.lineage, metrics=body.metrics, segment_metrics=body.segment_metrics,
                champion=await self._champion(conn, model), policy=policy,
            )
            policy_doc = policy.model_dump(mode="json")
            row = await store.insert_version(
                conn, model=model, version=number, seq=2,
                status="validated" if result.passed else "validation-failed",
                artifact_uri=body.artifact_uri, lineage=body.lineage.model_dump(mode="json", by_alias=True),
                metrics=body.metrics, segment_metrics=body.segment_metrics, training_profile=body.training_profile,
                description=body.description, tags=body.tags,
                validation={"passed": result.passed, "checks": [c.model_dump() for c in result.checks],
                            "policy": policy_doc},
                validation_passed=result.passed, run_id=run_id, run_link=run_link, registered_by=who.actor,
            )
            version = str(number)
            registered = ModelRegistered(
                model=model, version=version, seq=1, artifact_uri=body.artifact_uri, lineage=body.lineage,
                metrics=body.metrics, segment_metrics=body.segment_metrics,
                training_profile=body.training_profile, description=body.description, tags=body.tags,
                registered_by=who.actor, created_at=row["created_at"],
            )
            if len(registered.model_dump_json(by_alias=True)) > MAX_EVENT_BYTES:
                # A message the broker refuses would stop the outbox relay for every later event.
                raise InvalidInput(f"the version's model-registered event would exceed {MAX_EVENT_BYTES} bytes; "
                                   "keep the training profile compact", field="body.training_profile")
            await outbox.enqueue(
                conn,
                self._event("model-registered", registered, who.actor),
                self._event("model-validated", ModelValidated(
                    model=model, version=version, seq=2, passed=result.passed, checks=result.checks,
                    policy=policy_doc,
                ), who.actor),
            )
        if self.metrics is not None:
            self.metrics.registered(result.passed, result.checks)
        return RegistrationOut(**_version_fields(row, []), validation=ValidationOut(
            passed=result.passed, checks=result.checks))

    async def revalidate(self, pool: asyncpg.Pool, who: Principal, model: str, version: int) -> RegistrationOut:
        """Run every gate again with today's policy and champion; publish ``model-validated``.

        Only for a version not yet requested or promoted (its gates are then
        final): raises :class:`ConflictError` otherwise.
        """
        async with pool.acquire() as conn, conn.transaction():
            if await store.get_model(conn, model, for_update=True) is None:
                raise ModelNotFound(model)
            row = await self.version_row(conn, model, version, for_update=True)
            if row["status"] not in ("validated", "validation-failed"):
                raise ConflictError(f"version {version} is {row['status']}; its validation is final")
            policy = (await self.policy_for(conn, model)).effective
            champion = await self._champion(conn, model)
            result = domain.validate(
                lineage=Lineage.model_validate(row["lineage"]), metrics=row["metrics"],
                segment_metrics=row["segment_metrics"],
                champion=champion if champion is None or champion.version != str(version) else None,
                policy=policy,
            )
            policy_doc = policy.model_dump(mode="json")
            seq = await store.next_seq(conn, model, version)
            row = await store.set_validation(
                conn, model, version,
                {"passed": result.passed, "checks": [c.model_dump() for c in result.checks], "policy": policy_doc},
                passed=result.passed, status="validated" if result.passed else "validation-failed",
            )
            await outbox.enqueue(conn, self._event("model-validated", ModelValidated(
                model=model, version=str(version), seq=seq, passed=result.passed, checks=result.checks,
                policy=policy_doc,
            ), who.actor))
            aliases = await store.version_aliases(conn, model, version)
        if self.metrics is not None:
            self.metrics.validated(result.checks)
        return RegistrationOut(**_version_fields(row, aliases),
                               validation=ValidationOut(passed=result.passed, checks=result.checks))

    async def version_row(
        self, conn: asyncpg.Connection, model: str, version: int, *, for_update: bool = False
    ) -> asyncpg.Record:
        row = await store.get_version(conn, model, version, for_update=for_update)
        if row is None:
            if await store.get_model(conn, model) is None:
                raise ModelNotFound(model)
            raise VersionNotFound(model, version)
        return row

    async def version_views(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[VersionOut]:
        models = sorted({r["model"] for r in rows})
        aliases = await store.model_aliases(conn, models)
        out = []
        for r in rows:
            names = [a for a, v in aliases[r["model"]].items() if v == r["version"]]
            out.append(VersionOut(**_version_fields(r, names)))
        return out

    async def version_detail(self, conn: asyncpg.Connection, model: str, version: int) -> VersionDetail:
        """Lineage, gate results, promotion requests with reviews, alias history and rollouts of a version."""
        row = await self.version_row(conn, model, version)
        requests = await store.requests_for_version(conn, model, version)
        history = await store.alias_history(conn, model, version)
        rollouts = await store.rollouts_for_version(conn, model, version)
        validation = row["validation"]
        return VersionDetail(
            **_version_fields(row, await store.version_aliases(conn, model, version)),
            validation=ValidationOut(passed=validation["passed"], checks=validation["checks"]),
            seq=row["seq"], lineage=Lineage.model_validate(row["lineage"]),
            segment_metrics=row["segment_metrics"], training_profile=row["training_profile"],
            policy=validation.get("policy", {}),
            promotion_requests=await self.request_views(conn, requests),
            alias_history=[_alias_move(h) for h in history],
            rollouts=[
                RolloutOut(rollout_id=r["rollout_id"], outcome=r["outcome"], version=str(r["version"]),
                           baseline_version=r["baseline_version"], seq=r["seq"], reason=r["reason"], at=r["at"])
                for r in rollouts
            ],
            run_id=row["run_id"],
        )

    async def update_version(
        self, pool: asyncpg.Pool, model: str, version: int, *, description: str | None, set_description: bool,
        tags: Mapping[str, str | None] | None,
    ) -> VersionOut:
        """Change a version's description and tags (merge patch; None removes a tag).

        Raises :class:`InvalidInput` for a tag fixed at registration
        (``mloop.lineage.*``, ``mloop.metric.*``): lineage is never rewritten.
        """
        if tags:
            domain.check_tag_change(tags)
        async with pool.acquire() as conn, conn.transaction():
            await self.version_row(conn, model, version)
            row = await store.update_version(conn, model, version, description=description,
                                             set_description=set_description, tags=tags)
            assert row is not None
            return (await self.version_views(conn, [row]))[0]

    async def _state(self, conn: asyncpg.Connection, row: asyncpg.Record) -> VersionState:
        return VersionState(
            model=row["model"], version=str(row["version"]), status=row["status"],
            validation_passed=row["validation_passed"], served_traffic=row["served_traffic"],
            aliases=tuple(await store.version_aliases(conn, row["model"], row["version"])),
            has_promotion_requests=bool(await store.requests_for_version(conn, row["model"], row["version"])),
            had_aliases=bool(await store.alias_history(conn, row["model"], row["version"])),
        )

    async def _retired(
        self, conn: asyncpg.Connection, who: Principal, model: str, version: int,
        action: Literal["archived", "deleted"],
    ) -> None:
        await outbox.enqueue(conn, self._event("model-version-retired", VersionRetired(
            model=model, version=str(version), action=action, changed_by=who.actor), who.actor))

    async def archive_version(self, pool: asyncpg.Pool, who: Principal, model: str, version: int) -> VersionOut:
        """Archive a version (it stays readable, is never promoted again); publish ``model-version-retired``.

        Archiving an archived version changes nothing and publishes nothing.
        Raises :class:`VersionInUse` while an alias points to it.
        """
        async with pool.acquire() as conn, conn.transaction():
            row = await self.version_row(conn, model, version, for_update=True)
            domain.check_archivable(await self._state(conn, row))
            if row["status"] != "archived":
                await store.set_version_status(conn, model, version, "archived")
                await self._retired(conn, who, model, version, "archived")
            return (await self.version_views(conn, [await self.version_row(conn, model, version)]))[0]

    async def delete_version(self, pool: asyncpg.Pool, who: Principal, model: str, version: int) -> None:
        """Delete a version that never served; publish ``model-version-retired`` (``deleted``)."""
        async with pool.acquire() as conn, conn.transaction():
            row = await self.version_row(conn, model, version, for_update=True)
            domain.check_deletable(await self._state(conn, row))
            await store.delete_version(conn, model, version)
            await self._retired(conn, who, model, version, "deleted")

    # ------------------------------------------------------------------ aliases

    async def _move_alias(
        self, conn: asyncpg.Connection, model: str, alias: str, version: int | None, *, actor: str,
        reason: str | None,
    ) -> AliasOut:
        """Point ``alias`` at ``version`` (None removes it), record and publish the move.

        The caller holds the model's row lock.
        """
        previous = await store.get_alias(conn, model, alias)
        if version is None:
            await store.delete_alias(conn, model, alias)
        else:
            await store.set_alias(conn, model, alias, version, actor)
        seq = await store.next_alias_seq(conn, model)
        await store.add_alias_history(conn, model=model, alias=alias, version=version, previous_version=previous,
                                      seq=seq, actor=actor, reason=reason)
        await outbox.enqueue(conn, self._event("model-alias-changed", AliasChanged(
            model=model, alias=alias, version=_str(version), previous_version=_str(previous), seq=seq,
            reason=reason,
        ), actor))
        return AliasOut(model=model, alias=alias, version=_str(version), previous_version=_str(previous), seq=seq)

    async def set_alias(
        self, pool: asyncpg.Pool, who: Principal, model: str, alias: str, version: int, reason: str | None
    ) -> AliasOut:
        """Move ``alias`` to ``version``; moving it where it already is changes nothing.

        Raises :class:`ProtectedAlias` for ``champion`` / ``previous-champion``
        (only a completed rollout moves them), :class:`VersionNotEligible` for a
        version that failed validation or is archived.
        """
        domain.check_alias_by_hand(alias)  # refused whatever the model or version
        async with pool.acquire() as conn, conn.transaction():
            if await store.get_model(conn, model, for_update=True) is None:
                raise ModelNotFound(model)
            row = await self.version_row(conn, model, version)
            domain.check_alias_target(alias, await self._state(conn, row))
            current = await store.get_alias(conn, model, alias)
            if current == version:
                model_row = await store.get_model(conn, model)
                assert model_row is not None
                return AliasOut(model=model, alias=alias, version=str(version), previous_version=str(version),
                                seq=model_row["alias_seq"])
            return await self._move_alias(conn, model, alias, version, actor=who.actor, reason=reason)

    async def delete_alias(self, pool: asyncpg.Pool, who: Principal, model: str, alias: str) -> AliasOut:
        """Remove ``alias``; raises :class:`ProtectedAlias` for a platform-managed one."""
        domain.check_alias_by_hand(alias)
        async with pool.acquire() as conn, conn.transaction():
            if await store.get_model(conn, model, for_update=True) is None:
                raise ModelNotFound(model)
            if await store.get_alias(conn, model, alias) is None:
                raise AliasNotFound(model, alias)
            return await self._move_alias(conn, model, alias, None, actor=who.actor, reason=None)

    async def version_by_alias(self, conn: asyncpg.Connection, model: str, alias: str) -> VersionOut:
        v = await store.get_alias(conn, model, alias)
        if v is None:
            if await store.get_model(conn, model) is None:
                raise ModelNotFound(model)
            raise AliasNotFound(model, alias)
        return (await self.version_views(conn, [await self.version_row(conn, model, v)]))[0]

    async def alias_history(self, conn: asyncpg.Connection, model: str) -> list[AliasMoveOut]:
        if await store.get_model(conn, model) is None:
            raise ModelNotFound(model)
        return [_alias_move(h) for h in await store.alias_history(conn, model)]

    # ------------------------------------------------------------------ promotion

    async def request_views(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[PromotionRequestOut]:
        reviews = await store.reviews_for(conn, [r["id"] for r in rows])
        return [_request_view(r, reviews[r["id"]]) for r in rows]

    async def get_request(self, conn: asyncpg.Connection, request_id: str) -> PromotionRequestOut:
        row = await store.get_request(conn, request_id)
        if row is None:
            raise PromotionRequestNotFound(request_id)
        return (await self.request_views(conn, [row]))[0]

    async def request_promotion(
        self, pool: asyncpg.Pool, who: Principal, model: str, version: int, reason: str | None
    ) -> PromotionRequestOut:
        """File a promotion request; publish ``promotion-requested``.

        With a model's auto-approval policy the request is approved at once by
        ``policy:<name>`` and ``promotion-reviewed`` and ``model-promoted``
        follow in the same transaction — unless the requester is the one who
        set that policy: then it waits for a reviewer like any other. Raises :class:`NotPromotable`.
        """
        async with pool.acquire() as conn, conn.transaction():
            if await store.get_model(conn, model, for_update=True) is None:
                raise ModelNotFound(model)
            row = await self.version_row(conn, model, version, for_update=True)
            domain.check_promotable(await self._state(conn, row),
                                    pending_request=await store.pending_request(conn, model, version))
            policy = (await self.policy_for(conn, model)).effective
            request = await store.insert_request(
                conn, id=uuid7(), model=model, version=version, status="pending", requested_by=who.actor,
                requester_sub=who.sub, reason=reason, required_approvals=policy.required_approvals,
            )
            await store.set_version_status(conn, model, version, "pending-promotion")
            await outbox.enqueue(conn, self._event("promotion-requested", PromotionRequested(
                model=model, version=str(version), seq=await store.next_seq(conn, model, version),
                promotion_request_id=request["id"], requested_by=who.actor, reason=reason,
            ), who.actor))
            approver = domain.auto_approver(policy)
            if approver is not None and await self._auto_approval_author(conn, model) == who.actor:
                # Four eyes hold for policies too: whoever enabled auto-approval cannot use it alone.
                approver = None
            if approver is not None:
                await self._approve(conn, request, approver, approver,
                                    f"approved automatically by auto-approval policy {policy.auto_approval}",
                                    approved_by=[approver])
            out = await self.get_request(conn, request["id"])
        if approver is not None and self.metrics is not None:
            self.metrics.reviewed("approved", promoted=True, by_policy=True)
        return out

    async def _auto_approval_author(self, conn: asyncpg.Connection, model: str) -> str | None:
        """Who last set the policy that holds the model's auto-approval (its override, else the default)."""
        override = await store.get_policy(conn, _model_scope(model)) or {}
        scope = _model_scope(model) if "auto_approval" in override else DEFAULT_SCOPE
        history = await store.POLICY_HISTORY.changes(conn, scope)
        return history[-1].actor if history else None

    async def review_request(
        self, pool: asyncpg.Pool, who: Principal, request_id: str, decision: Decision, comment: str | None
    ) -> PromotionRequestOut:
        """Approve or reject; publish ``promotion-reviewed`` and, once approved, ``model-promoted``.

        Raises :class:`SelfReview` (nothing is written or published),
        :class:`CommentRequired`, :class:`RequestClosed`, :class:`AlreadyReviewed`.
        """
        async with pool.acquire() as conn, conn.transaction():
            request = await store.get_request(conn, request_id, for_update=True)
            if request is None:
                raise PromotionRequestNotFound(request_id)
            reviews = (await store.reviews_for(conn, [request_id]))[request_id]
            approvals = [r for r in reviews if r["decision"] == "approved"]
            outcome = domain.review(
                domain.PromotionState(
                    id=request_id, status=request["status"], requested_by=request["requested_by"],
                    requester_sub=request["requester_sub"], approvals=tuple(r["reviewer_sub"] for r in approvals),
                ),
                reviewer_sub=who.sub, decision=decision, comment=comment,
                required_approvals=request["required_approvals"],
            )
            await store.get_model(conn, request["model"], for_update=True)
            model, version = request["model"], request["version"]
            if outcome.promoted:
                await self._approve(conn, request, who.actor, who.sub, comment,
                                    approved_by=[r["reviewer"] for r in approvals] + [who.actor])
            else:
                await store.add_review(conn, request_id=request_id, reviewer=who.actor, reviewer_sub=who.sub,
                                       decision=decision, comment=comment)
                await store.set_request_status(conn, request_id, outcome.status)
                if outcome.status == "rejected":
                    await store.set_version_status(conn, model, version, "validated")
                await outbox.enqueue(conn, self._event("promotion-reviewed", PromotionReviewed(
                    model=model, version=str(version), seq=await store.next_seq(conn, model, version),
                    promotion_request_id=request_id, decision=decision, reviewer=who.actor,
                    requested_by=request["requested_by"], comment=comment,
                ), who.actor))
            out = await self.get_request(conn, request_id)
        if self.metrics is not None:
            self.metrics.reviewed(decision, promoted=outcome.promoted)
        return out

    async def _approve(
        self, conn: asyncpg.Connection, request: asyncpg.Record, reviewer: str, reviewer_sub: str,
        comment: str | None, *, approved_by: list[str],
    ) -> None:
        """The approving review: record it, mark the version promoted, publish the review and ``model-promoted``."""
        model, version, request_id = request["model"], request["version"], request["id"]
        await store.add_review(conn, request_id=request_id, reviewer=reviewer, reviewer_sub=reviewer_sub,
                               decision="approved", comment=comment)
        champion = await store.get_alias(conn, model, CHAMPION)
        await store.set_request_status(conn, request_id, "approved", previous_champion=champion)
        await store.set_version_status(conn, model, version, "promoted", served_traffic=True)
        await outbox.enqueue(
            conn,
            self._event("promotion-reviewed", PromotionReviewed(
                model=model, version=str(version), seq=await store.next_seq(conn, model, version),
                promotion_request_id=request_id, decision="approved", reviewer=reviewer,
                requested_by=request["requested_by"], comment=comment,
            ), reviewer),
            self._event("model-promoted", ModelPromoted(
                model=model, version=str(version), seq=await store.next_seq(conn, model, version),
                previous_champion=_str(champion), requested_by=request["requested_by"], approved_by=approved_by,
                promotion_request_id=request_id,
            ), reviewer),
        )

    # ------------------------------------------------------------------ rollout outcomes

    async def _rollout_version(
        self, conn: asyncpg.Connection, event: Event[RolloutCompleted] | Event[RolloutRolledBack]
    ) -> asyncpg.Record | None:
        """The version a rollout event is about, or None when the event is stale.

        Raises :class:`PermanentError` (the event goes to ``dead-letter``) for
        a version that does not exist or was never approved for promotion: a
        rollout outcome is trusted only for a version a second person
        approved, so a message forged onto the topic cannot move ``champion``.
        """
        data = event.data
        if not data.version.isdigit():
            raise PermanentError(f"{data.model} has no version {data.version!r}")
        await store.get_model(conn, data.model, for_update=True)
        row = await store.get_version(conn, data.model, int(data.version), for_update=True)
        if row is None:
            raise PermanentError(f"model {data.model!r} has no version {data.version}")
        last = await store.rollout_seen_seq(conn, data.rollout_id)
        if last is not None and last >= data.seq:
            return None
        requests = await store.requests_for_version(conn, data.model, int(data.version))
        if not any(r["status"] == "approved" for r in requests):
            raise PermanentError(f"{data.model} version {data.version} was never approved for promotion; "
                                 f"refusing the outcome of rollout {data.rollout_id}")
        return row

    async def _record_rollout(self, conn: asyncpg.Connection, event: Event[Any], outcome: str) -> None:
        data = event.data
        await store.record_rollout(
            conn, rollout_id=data.rollout_id, model=data.model, version=int(data.version),
            baseline_version=data.baseline_version, outcome=outcome, seq=data.seq, reason=data.reason,
            event_id=event.id, at=event.time or datetime.now(UTC),
        )
        if data.baseline_version and data.baseline_version.isdigit():
            await store.mark_served(conn, data.model, int(data.baseline_version))

    async def apply_rollout_completed(self, conn: asyncpg.Connection, event: Event[RolloutCompleted]) -> None:
        """Make the version ``champion`` and the former champion ``previous-champion``."""
        row = await self._rollout_version(conn, event)
        if row is None:
            return
        model, version = row["model"], row["version"]
        actor = event.actor or "service:rollout"
        current = await store.get_alias(conn, model, CHAMPION)
        previous = await store.get_alias(conn, model, PREVIOUS_CHAMPION)
        moves = domain.champion_moves(_str(current), _str(previous), str(version))
        for move in moves:
            await self._move_alias(conn, model, move.alias, int(move.version) if move.version else None,
                                   actor=actor, reason=f"rollout {event.data.rollout_id} completed")
        if row["status"] != "archived":
            await store.set_version_status(conn, model, version, "production", served_traffic=True)
        await self._record_rollout(conn, event, "completed")

    async def apply_rollout_rolled_back(self, conn: asyncpg.Connection, event: Event[RolloutRolledBack]) -> None:
        """Mark the version rolled back; the aliases stay where they are."""
        row = await self._rollout_version(conn, event)
        if row is None:
            return
        if row["status"] != "archived":
            await store.set_version_status(conn, row["model"], row["version"], "rolled-back", served_traffic=True)
        await self._record_rollout(conn, event, "rolled-back")


# --------------------------------------------------------------------------- row → view


def _model_fields(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in ("name", "description", "tags", "created_by", "created_at", "updated_at")}


def _version_fields(row: asyncpg.Record, aliases: list[str]) -> dict[str, Any]:
    return {
        "model": row["model"], "version": str(row["version"]), "status": row["status"],
        "artifact_uri": row["artifact_uri"], "description": row["description"], "tags": row["tags"],
        "metrics": row["metrics"], "validation_passed": row["validation_passed"],
        "served_traffic": row["served_traffic"], "aliases": aliases, "registered_by": row["registered_by"],
        "created_at": row["created_at"], "updated_at": row["updated_at"], "archived_at": row["archived_at"],
    }


def _alias_move(h: asyncpg.Record) -> AliasMoveOut:
    return AliasMoveOut(alias=h["alias"], version=_str(h["version"]), previous_version=_str(h["previous_version"]),
                        seq=h["seq"], actor=h["actor"], reason=h["reason"], at=h["at"])


def _request_view(r: asyncpg.Record, reviews: list[asyncpg.Record]) -> PromotionRequestOut:
    return PromotionRequestOut(
        id=r["id"], model=r["model"], version=str(r["version"]), status=r["status"],
        requested_by=r["requested_by"], reason=r["reason"], required_approvals=r["required_approvals"],
        approved_by=[v["reviewer"] for v in reviews if v["decision"] == "approved"],
        previous_champion=_str(r["previous_champion"]),
        reviews=[ReviewOut(reviewer=v["reviewer"], decision=v["decision"], comment=v["comment"], at=v["at"])
                 for v in reviews],
        created_at=r["created_at"], decided_at=r["decided_at"],
    )
