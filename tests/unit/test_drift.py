"""Drift decisions over gathered facts: each finding, its severity, and what is not drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rotator.config import Policy
from rotator.engine.runrecord import AccountRecord, Run, RunState, TokenRef
from rotator.motherduck.client import TokenInfo
from rotator.ops.drift import BackendView, DriftReport, Finding, assess, scheduled_rotation_at

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = Policy(rotate_after=timedelta(days=30), rotate_before_expiry=timedelta(days=7))


def live(*ids: str, expire_in: timedelta | None = None) -> list[TokenInfo]:
    expire = NOW + expire_in if expire_in else None
    return [TokenInfo(i, f"name-{i}", NOW - timedelta(days=1), expire) for i in ids]


def record(current: str | None = "cur") -> AccountRecord:
    return AccountRecord("svc_a", current_token=TokenRef(current) if current else None)


def run(state: RunState, old: str = "cur", new: str = "new", run_id: str = "r1") -> Run:
    return Run(
        run_id,
        "svc_a",
        state,
        "rotator-svc_a-x",
        NOW.isoformat(),
        NOW.isoformat(),
        old_token=TokenRef(old),
        new_token=TokenRef(new),
        revoke_not_before=(NOW + timedelta(hours=1)).isoformat(),
    )


def codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.severity, f.code) for f in findings]


def check(
    views: list[BackendView],
    tokens: list[TokenInfo],
    rec: AccountRecord | None = None,
    active: Run | None = None,
    runs: tuple[Run, ...] = (),
) -> list[tuple[str, str]]:
    return codes(
        assess(
            policy=POLICY,
            backends=views,
            record=rec or record(),
            active=active,
            runs=runs,
            live=tokens,
        )
    )


class TestAssess:
    def test_clean(self) -> None:
        """Every backend on the store's live current token, nothing else live: no findings."""
        assert check([BackendView("file:a", "cur"), BackendView("vault:b", "cur")], live("cur")) == []

    def test_backend_on_revoked_token(self) -> None:
        """A backend serving a token MotherDuck does not list is critical, naming the backend."""
        findings = assess(
            policy=POLICY,
            backends=[BackendView("vault:b", "gone")],
            record=record("cur"),
            active=None,
            runs=(),
            live=live("cur"),
        )
        [dead] = [f for f in findings if f.code == "backend_on_dead_token"]
        assert dead.severity == "critical" and dead.backend == "vault:b" and dead.token_id == "gone"

    def test_unknown_token_id_is_said(self) -> None:
        """A value with no token id is reported as such, not guessed."""
        got = check([BackendView("file:a", None)], live("cur"))
        assert ("warning", "backend_token_id_unknown") in got

    def test_empty_and_unreadable_backends_are_critical(self) -> None:
        """A backend with nothing stored, or one that cannot be read, is critical."""
        got = check(
            [BackendView("file:a", empty=True), BackendView("vault:b", error="vault:b: 403")],
            live("cur"),
        )
        assert ("critical", "backend_empty") in got and ("critical", "backend_unreadable") in got

    def test_disagreeing_live_backends_warn(self) -> None:
        """Two backends on two different live tokens: a warning."""
        got = check([BackendView("a", "cur"), BackendView("b", "other")], live("cur", "other"))
        assert ("warning", "backends_disagree") in got

    def test_disagreement_with_a_dead_token_is_critical(self) -> None:
        """When one side of a disagreement is dead, the disagreement is critical too."""
        got = check([BackendView("a", "cur"), BackendView("b", "gone")], live("cur"))
        assert ("critical", "backends_disagree") in got
        assert ("critical", "backend_on_dead_token") in got

    def test_grace_period_is_not_drift(self) -> None:
        """Awaiting revoke: old and new both live, backends on new, store on new — clean."""
        active = run(RunState.AWAITING_REVOKE)
        assert check([BackendView("a", "new")], live("cur", "new"), record("new"), active) == []

    def test_mixed_backends_mid_run_are_info(self) -> None:
        """Before promote, backends split between the run's old and new token is expected."""
        active = run(RunState.STORING)
        got = check([BackendView("a", "cur"), BackendView("b", "new")], live("cur", "new"), record("cur"), active)
        assert got == [("info", "run_in_progress")]

    def test_unknown_extra_token_is_listed(self) -> None:
        """A live token nobody holds and no run made is a warning (listed, never revoked)."""
        got = check([BackendView("a", "cur")], live("cur", "stray"))
        assert got == [("warning", "unknown_live_token")]

    def test_late_committed_create_is_an_orphan_by_its_run_name(self) -> None:
        """A token whose create committed after its run stopped looking has an id no run
        recorded; its run's token name still says which run made it."""
        done = run(RunState.COMPLETED, old="gone", new="cur", run_id="r0")
        late = TokenInfo("late", done.token_name, NOW, None)
        got = check([BackendView("a", "cur")], [*live("cur"), late], runs=(done,))
        assert got == [("warning", "orphaned_run_token")]

    def test_orphaned_run_token(self) -> None:
        """A live token one of our finished runs created but nobody holds is an orphan."""
        old_run = run(RunState.ROLLED_BACK, old="cur", new="orphan", run_id="r0")
        got = check([BackendView("a", "cur")], live("cur", "orphan"), runs=(old_run,))
        assert got == [("warning", "orphaned_run_token")]

    def test_state_token_not_live(self) -> None:
        """The store's current token gone from MotherDuck is critical."""
        got = check([BackendView("a", "other")], live("other"), record("cur"))
        assert ("critical", "state_token_dead") in got

    def test_state_disagrees_with_backends(self) -> None:
        """Backends agree on a live token the store does not think is current: a warning."""
        got = check([BackendView("a", "other")], live("cur", "other"), record("cur"))
        assert ("warning", "state_mismatch") in got

    def test_token_expiring_before_due(self) -> None:
        """A served token that expires before created + rotate_after warns."""
        got = check([BackendView("a", "cur")], live("cur", expire_in=timedelta(days=3)))
        assert got == [("warning", "expires_before_due")]

    def test_long_ttl_is_fine(self) -> None:
        """A ttl longer than rotate_after is not a finding."""
        assert check([BackendView("a", "cur")], live("cur", expire_in=timedelta(days=80))) == []


class TestReport:
    def report(self, *severities: str) -> DriftReport:
        findings = tuple(Finding(s, "x", "m") for s in severities)  # type: ignore[arg-type]
        return DriftReport("svc_a", NOW.isoformat(), findings, (), "cur", ("cur",))

    def test_fail_on(self) -> None:
        """`any` fails on warnings, `critical` only on critical findings, info never fails."""
        assert not self.report().fails("any")
        assert not self.report("info").fails("any")
        assert self.report("warning").fails("any") and not self.report("warning").fails("critical")
        assert self.report("warning", "critical").fails("critical")
        assert self.report("info", "critical").worst == "critical"

    def test_json_shape(self) -> None:
        """to_dict has the account, a drift summary and a findings list."""
        doc = self.report("warning").to_dict()
        assert doc["account"] == "svc_a" and doc["drift"] == "warning"
        assert doc["findings"] == [
            {"severity": "warning", "code": "x", "message": "m", "backend": None, "token_id": None}
        ]


def test_scheduled_rotation_at() -> None:
    """Due at created + rotate_after, or earlier by rotate_before_expiry for a ttl'd token."""
    created = NOW.isoformat()
    assert scheduled_rotation_at(TokenRef("t", created_ts=created), POLICY) == NOW + timedelta(days=30)
    expiring = TokenRef("t", created_ts=created, expire_at=(NOW + timedelta(days=10)).isoformat())
    assert scheduled_rotation_at(expiring, POLICY) == NOW + timedelta(days=3)
    assert scheduled_rotation_at(None, POLICY) is None
