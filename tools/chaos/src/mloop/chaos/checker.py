"""The checker: every invariant the loop must keep under faults, judged over a settled run's history.

Pure. :func:`check` returns one :class:`Verdict` per invariant; a failing
verdict names the first violating item and, through :func:`explain`, the
faults injected around its time (all of them when the item has no time, such
as a count that does not add up).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mloop.chaos.history import FaultRecord, History

__all__ = ["INVARIANTS", "GRACE_S", "Verdict", "check", "explain", "faults_around"]

#: How late a due analysis, a lease or an outbox row may be when the history is collected.
GRACE_S = 20.0
#: Faults within this many seconds of a violating item are printed with it.
AROUND_S = 20.0

TERMINAL_ROLLOUT = frozenset({"completed", "rolled-back", "aborted", "superseded"})
TERMINAL_JOB = frozenset({"completed", "failed", "timed-out", "cancelled"})


@dataclass(frozen=True)
class Verdict:
    """One invariant's outcome; for a failure, the first violating ``item`` and its time when known."""

    invariant: str
    ok: bool
    detail: str
    item: Any = None
    at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "ok": self.ok, "detail": self.detail, "item": self.item, "at": self.at}


def _ok(name: str, detail: str) -> Verdict:
    return Verdict(name, True, detail)


def _fail(name: str, detail: str, item: Any = None, at: float | None = None) -> Verdict:
    return Verdict(name, False, detail, item, at)


# -------------------------------------------------------------------------- counts


def predictions_counted_exactly_once(h: History) -> Verdict:
    name = "predictions counted exactly once"
    delivered = int(h.sdk.get("predictions_delivered", -1))
    seen = sum(int(v.get("predictions_seen", 0)) for v in h.monitor)
    if delivered < 0:
        return _fail(name, "the SDK's delivered count is missing")
    if seen != delivered:
        how = "more (counted twice)" if seen > delivered else "fewer (lost)"
        detail = f"the monitor counted {seen} prediction records, the SDK delivered {delivered}: " \
                 f"{abs(seen - delivered)} {how}"
        on_topic = h.sdk.get("predictions_on_topic")
        if on_topic is not None and int(on_topic) != delivered:
            detail += f"; the topic holds {on_topic}: lost (or doubled) between the SDK and the broker"
            return _fail(name, detail)
        if h.lost_messages:
            first = min(h.lost_messages, key=lambda m: float(m.get("at") or 0))
            detail += f"; {len(h.lost_messages)} message(s) on the topic never reached the monitor's store"
            return _fail(name, detail, first, first.get("at"))
        dead = [d for d in h.dead_letters if d.get("topic") == "prediction-logged"]
        if dead:
            detail += f"; {len(dead)} prediction message(s) dead-lettered"
            return _fail(name, detail, dead[0], dead[0].get("at"))
        behind = [o for o in h.consumer_offsets if o["topic"] == "prediction-logged" and o["applied"] != o["end"]]
        if behind:
            return _fail(name, detail + "; the monitor has not applied every message", behind[0])
        worst = max(h.monitor, key=lambda v: int(v.get("predictions_seen", 0)), default=None)
        return _fail(name, detail, worst)
    return _ok(name, f"{seen} records counted, {delivered} delivered")


def labels_joined_at_most_once(h: History) -> Verdict:
    name = "labels joined at most once"
    joined = sum(int(v.get("labels_joined", 0)) for v in h.monitor)
    delivered = int(h.sdk.get("labels_delivered", -1))
    if delivered >= 0 and joined > delivered:
        return _fail(name, f"{joined} labels joined but only {delivered} delivered")
    if h.labelled_rows is not None and joined > h.labelled_rows:
        return _fail(name, f"{joined} label joins for {h.labelled_rows} labelled predictions: "
                     f"{joined - h.labelled_rows} joined twice")
    return _ok(name, f"{joined} joined, {delivered} delivered, {h.labelled_rows} labelled predictions")


# -------------------------------------------------------------------------- audit


def governance_events_in_ledger_once(h: History) -> Verdict:
    name = "every governance event in the ledger exactly once"
    recorded = Counter(str(r["event_id"]) for r in h.ledger)
    for event in sorted(h.produced, key=lambda e: float(e.get("at") or 0)):
        n = recorded.get(str(event["id"]), 0)
        if n != 1:
            return _fail(name, f"{event['topic']} {event['id']} is in the ledger {n} times", event, event.get("at"))
    produced = {str(e["id"]) for e in h.produced}
    extra = [r for r in h.ledger if str(r["event_id"]) not in produced]
    if extra:
        first = min(extra, key=lambda r: float(r.get("at") or 0))
        return _fail(name, f"{len(extra)} ledger records of events never seen on the topics", first, first.get("at"))
    return _ok(name, f"{len(h.produced)} events produced, each recorded once")


def chains_verify(h: History) -> Verdict:
    name = "every ledger chain verifies"
    if not h.audit.get("verify_ok"):
        return _fail(name, "the audit service's verification failed", h.audit.get("verify"))
    return _ok(name, f"{len(h.audit.get('chains', []))} chains verify")


def latest_checkpoint_signs_the_ledger(h: History) -> Verdict:
    name = "the latest checkpoint signs the whole ledger"
    chains = h.audit.get("chains", [])
    if not chains:
        return _fail(name, "no ledger chain")
    for c in chains:
        if c.get("signed_size") != c.get("size"):
            return _fail(name, f"chain {c.get('chain')} holds {c.get('size')} records, its latest checkpoint signs "
                         f"{c.get('signed_size')}", c)
    if not h.audit.get("bundle_ok"):
        return _fail(name, "the exported evidence bundle does not verify against the public key", h.audit.get("bundle"))
    return _ok(name, f"{len(chains)} chains signed to their head; the evidence bundle verifies offline")


# -------------------------------------------------------------------------- registry


def versions_gapless(h: History) -> Verdict:
    name = "version numbers gapless"
    numbers = sorted(int(v["version"]) for v in h.versions)
    for expected, got in enumerate(numbers, start=1):
        if got != expected:
            item = next(v for v in h.versions if int(v["version"]) == got)
            return _fail(name, f"version {got} follows {expected - 1}: {expected} is missing or doubled",
                         item, item.get("created_at"))
    return _ok(name, f"versions 1..{len(numbers)}")


def four_eyes(h: History) -> Verdict:
    name = "every promotion approved by someone other than its requester"
    approved_versions: set[str] = set()
    for p in sorted(h.promotions, key=lambda p: float(p.get("at") or 0)):
        if p.get("status") != "approved":
            continue
        others = [a for a in p.get("approvers", []) if a != p.get("requested_by")]
        if not others:
            return _fail(name, f"promotion {p['id']} of v{p['version']} approved by its requester only", p, p.get("at"))
        approved_versions.add(str(p["version"]))
    for move in h.champion_moves:
        if str(move["version"]) not in approved_versions:
            return _fail(name, f"champion moved to v{move['version']} without an approved promotion",
                         move, move.get("at"))
    return _ok(name, f"{len(approved_versions)} approved promotion(s), {len(h.champion_moves)} champion move(s)")


def one_champion_from_the_last_rollout(h: History) -> Verdict:
    name = "exactly one champion: the last completed rollout's candidate"
    if h.champion is None:
        return _fail(name, "no champion")
    completed = [r for r in h.rollouts if r.get("phase") == "completed"]
    if completed:
        last = max(completed, key=lambda r: float(r.get("finished_at") or 0))
        if str(last["candidate"]) != h.champion:
            return _fail(name, f"champion is v{h.champion}, the last completed rollout's candidate is "
                         f"v{last['candidate']}", last, last.get("finished_at"))
        return _ok(name, f"v{h.champion}, from rollout {last['id']}")
    moves = [str(m["version"]) for m in h.champion_moves]
    if moves and moves[-1] != h.champion:
        return _fail(name, f"champion is v{h.champion}, its alias history ends at v{moves[-1]}", h.champion_moves[-1])
    return _ok(name, f"v{h.champion} (no rollout completed)")


# -------------------------------------------------------------------------- progress


def no_rollout_stuck(h: History) -> Verdict:
    name = "no rollout stuck without a due analysis"
    for r in h.rollouts:
        if r.get("phase") in TERMINAL_ROLLOUT or r.get("phase") == "paused":
            continue
        due = r.get("next_analysis_at")
        if due is None or float(due) < h.collected_at - GRACE_S:
            return _fail(name, f"rollout {r['id']} in {r.get('phase')} with its next analysis due at {due}",
                         r, r.get("created_at"))
    return _ok(name, f"{len(h.rollouts)} rollout(s), none stuck")


def no_job_stuck(h: History) -> Verdict:
    name = "no retrain job stuck past its lease"
    for j in h.jobs:
        if j.get("state") in TERMINAL_JOB:
            continue
        lease = j.get("lease_until")
        if lease is None or float(lease) < h.collected_at - GRACE_S:
            return _fail(name, f"job {j['id']} in {j.get('state')} past its lease ({lease})", j, j.get("updated_at"))
    return _ok(name, f"{len(h.jobs)} job(s), none stuck")


def consumers_reached_the_end(h: History) -> Verdict:
    name = "every consumer that stores its offsets applied its topics to the end"
    if not h.consumer_offsets:
        return _fail(name, "no stored offsets")
    for o in h.consumer_offsets:
        if int(o["applied"]) != int(o["end"]):
            return _fail(name, f"{o.get('consumer')} on {o['topic']}/{o['partition']}: applied up to {o['applied']}, "
                         f"the partition ends at {o['end']}", o)
    consumers = {o.get("consumer") for o in h.consumer_offsets}
    return _ok(name, f"{len(consumers)} consumers, {len(h.consumer_offsets)} partitions applied to their end")


def outboxes_drained(h: History) -> Verdict:
    name = "every outbox drained"
    for o in h.outboxes:
        if int(o.get("unsent", 0)) > 0:
            return _fail(name, f"{o['unsent']} unsent row(s) in {o['schema']}.outbox", o, o.get("oldest_unsent_at"))
    return _ok(name, f"{len(h.outboxes)} outboxes empty")


def _routes(routes: Sequence[dict[str, Any]]) -> list[tuple[str, float, bool]]:
    return sorted((str(r["version"]), round(float(r["weight"]), 6), bool(r.get("shadow"))) for r in routes)


def routing_topic_matches_rollouts(h: History) -> Verdict:
    name = "the routing table on the compacted topic equals the rollout service's"
    for model in sorted(set(h.routing_topic) | set(h.routing_service)):
        on_topic, in_service = h.routing_topic.get(model), h.routing_service.get(model)
        if on_topic is None or in_service is None or _routes(on_topic) != _routes(in_service):
            item = {"model": model, "topic": on_topic, "service": in_service}
            return _fail(name, f"{model}: the topic says {on_topic}, the rollout service {in_service}", item)
    return _ok(name, f"{len(h.routing_service)} model(s) agree")


def cycle_ends(h: History) -> Verdict:
    name = "the cycle ends (completed or rolled back)"
    if h.outcome not in ("completed", "rolled-back"):
        return _fail(name, f"the loop's rollout of v{h.candidate} ended as {h.outcome!r}")
    return _ok(name, f"v{h.candidate}: {h.outcome}")


INVARIANTS: tuple[Callable[[History], Verdict], ...] = (
    predictions_counted_exactly_once,
    labels_joined_at_most_once,
    governance_events_in_ledger_once,
    chains_verify,
    latest_checkpoint_signs_the_ledger,
    versions_gapless,
    four_eyes,
    one_champion_from_the_last_rollout,
    no_rollout_stuck,
    no_job_stuck,
    outboxes_drained,
    consumers_reached_the_end,
    routing_topic_matches_rollouts,
    cycle_ends,
)


def check(history: History) -> list[Verdict]:
    """Every invariant's verdict, in a fixed order."""
    return [invariant(history) for invariant in INVARIANTS]


def faults_around(faults: Sequence[FaultRecord], at: float | None, window_s: float = AROUND_S) -> list[FaultRecord]:
    """The faults active within ``window_s`` of ``at``; all of them when ``at`` is unknown."""
    if at is None:
        return list(faults)
    return [f for f in faults if f.started_at - window_s <= at <= f.ended_at + window_s]


def explain(verdict: Verdict, history: History) -> str:
    """A failing verdict for people: the invariant, the first violating item, the faults around it."""
    lines = [f"FAIL {verdict.invariant}: {verdict.detail}"]
    if verdict.item is not None:
        lines.append(f"  first violating item: {verdict.item}")
    t0 = history.started_at
    if verdict.at is not None:
        lines.append(f"  at t+{verdict.at - t0:.1f}s")
    near = faults_around(history.faults, verdict.at)
    lines.append("  faults around it:" if verdict.at is not None else "  faults of the run (the item has no time):")
    lines += [f"    t+{f.started_at - t0:6.1f}s..{f.ended_at - t0:6.1f}s  {f.kind:<17} {f.target}" for f in near]
    if not near:
        lines.append("    (none)")
    return "\n".join(lines)
