"""The decisions behind `abort`, config edits under a run, drift's fingerprint match and
containment: plain functions over run records, tested without servers."""

from __future__ import annotations

from typing import Any

from backends.base import StoredToken
from rotator.engine.containment import describe
from rotator.engine.runrecord import BackendProgress, Run, RunState, TokenRef, identify
from rotator.engine.safety import abort_refusal, config_problems, past_promote
from rotator.secret import Secret

KEY = b"k" * 32
OLD_SECRET = Secret("eyJold.secret.value")
NEW_SECRET = Secret("eyJnew.secret.value")


def run(state: RunState, backends: dict[str, str], **kw: object) -> Run:
    return Run(
        run_id="r1",
        account="svc",
        state=state,
        token_name="rotator-svc-r1",
        started_at="2030-01-01T00:00:00+00:00",
        updated_at="2030-01-01T00:00:00+00:00",
        old_token=TokenRef("old", fingerprint=OLD_SECRET.fingerprint(KEY)),
        new_token=TokenRef("new", fingerprint=NEW_SECRET.fingerprint(KEY)),
        backends={label: BackendProgress(s) for label, s in backends.items()},
        **kw,  # type: ignore[arg-type]
    )


class TestAbortRefusal:
    def test_refused_once_a_revoke_was_sent(self) -> None:
        """Any revoke of the old token sent, even one later reset for a retry: refused."""
        r = run(RunState.FAILED_NEEDS_ATTENTION, {"a": "promoted"}, revoke_sent_at="t")
        reason = abort_refusal(r, "svc", {"old", "new"})
        assert reason is not None and "already sent the revoke" in reason

    def test_refused_after_promote_while_the_new_token_is_live(self) -> None:
        """During the grace the finishing command is named instead."""
        r = run(RunState.AWAITING_REVOKE, {"a": "promoted", "b": "promoted"})
        assert past_promote(r)
        reason = abort_refusal(r, "svc", {"old", "new"})
        assert reason is not None and "rotator rotate svc --revoke-now" in reason

    def test_allowed_after_promote_once_the_new_token_is_dead(self) -> None:
        """A dead new token protects nobody: backends may go back to the live old one."""
        r = run(RunState.FAILED_NEEDS_ATTENTION, {"a": "promoted"})
        assert abort_refusal(r, "svc", {"old"}) is None

    def test_refused_when_the_old_token_is_gone(self) -> None:
        """Rolling back onto a dead old token would break every consumer."""
        r = run(RunState.VERIFYING, {"a": "staged"})
        reason = abort_refusal(r, "svc", {"new"})
        assert reason is not None and "no longer live" in reason

    def test_allowed_before_promote(self) -> None:
        assert abort_refusal(run(RunState.VERIFYING, {"a": "staged"}), "svc", {"old", "new"}) is None


class TestConfigProblems:
    def test_removed_backend_before_promote_is_named_with_the_skip_flag(self) -> None:
        problems = config_problems(run(RunState.VERIFYING, {"a": "staged", "b": "staged"}), "svc", ["a"])
        assert len(problems) == 1 and "rotator abort r1 --skip-backend b" in problems[0]

    def test_added_backend_after_store_is_named(self) -> None:
        problems = config_problems(run(RunState.VERIFIED, {"a": "staged"}), "svc", ["a", "c"])
        assert len(problems) == 1 and "backend c was added" in problems[0]

    def test_added_backend_while_storing_is_fine(self) -> None:
        assert config_problems(run(RunState.STORING, {"a": "staged"}), "svc", ["a", "c"]) == []

    def test_past_promote_is_left_to_the_revoke_guard(self) -> None:
        r = run(RunState.AWAITING_REVOKE, {"a": "promoted", "b": "promoted"})
        assert config_problems(r, "svc", ["a", "c"]) == []

    def test_skipped_and_rolled_back_backends_need_nothing(self) -> None:
        r = run(RunState.VERIFYING, {"a": "staged", "b": "skipped", "c": "rolled_back"})
        assert config_problems(r, "svc", ["a"]) == []


class TestIdentify:
    refs = [
        TokenRef("old", fingerprint=OLD_SECRET.fingerprint(KEY)),
        TokenRef("new", fingerprint=NEW_SECRET.fingerprint(KEY)),
        TokenRef("adopted"),
    ]

    def test_value_matching_its_token_id(self) -> None:
        assert identify(StoredToken(NEW_SECRET, "new"), self.refs, KEY) == ("new", "backend", None)

    def test_value_edited_to_another_known_token(self) -> None:
        """Only motherduck_token changed: the value is the old token, whatever the id says."""
        got = identify(StoredToken(OLD_SECRET, "new"), self.refs, KEY)
        assert got == ("old", "fingerprint", "new")

    def test_value_edited_to_an_unknown_token(self) -> None:
        got = identify(StoredToken(Secret("eyJother.x.y"), "new"), self.refs, KEY)
        assert got == (None, None, "new")

    def test_id_without_a_recorded_fingerprint_is_believed(self) -> None:
        got = identify(StoredToken(Secret("eyJother.x.y"), "adopted"), self.refs, KEY)
        assert got == ("adopted", "backend", None)

    def test_raw_value_matched_by_fingerprint(self) -> None:
        assert identify(StoredToken(OLD_SECRET), self.refs, KEY) == ("old", "fingerprint", None)


class TestDescribe:
    def test_one_line_type_place_and_no_secret(self) -> None:
        """An unexpected error becomes one line naming its type and where; secrets scrubbed."""
        secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        try:
            raise KeyError(f"bad\nvalue {secret}")
        except KeyError as exc:
            text = describe(exc)
        assert text.startswith("unexpected KeyError: ")
        assert "\n" not in text and secret not in text
        assert "test_safety.py:" in text


class TestRollbackWithABackendGone:
    def test_rollback_names_the_missing_backend_and_abort_can_skip_it(self, tmp_path: Any) -> None:
        """A needs-attention rollback retried after a backend left the config: no KeyError;
        the run names the backend and the flag; `abort --skip-backend` finishes the rest."""
        from tests.unit.test_workflow import USER, World

        w = World(tmp_path, policy='checks = ["readback", {type = "command", command = ["false"]}]',
                  backends=2)
        w.adopt()
        w.backends[1].fail.add("rollback")
        first = w.engine().rotate(USER, force=True)
        assert first.result == "needs_attention" and first.run_id is not None
        gone = w.backends.pop(1)
        again = w.engine().rotate(USER)
        assert again.result == "needs_attention"
        assert f"--skip-backend {gone.label}" in again.message
        aborted = w.engine().abort(USER, first.run_id, skip_backends=[gone.label])
        assert aborted.result == "aborted" and aborted.exit_code == 0
        assert w.md.live_ids(USER) == {w.old.info.id} == w.served_ids()
