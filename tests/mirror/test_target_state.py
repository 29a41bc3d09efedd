"""Reading what each target holds: complete or an error that names the target."""
from __future__ import annotations

import pytest
from registry_lifecycle.mirror.errors import TargetError, TargetRewritesDigests
from registry_lifecycle.mirror.target_state import survey
from registry_lifecycle.sources.errors import SourceForbidden, SourceUnavailable

from tests.mirror.worlds import digest


class FakeTarget:
    """Answers HEADs from a dict; `rewrite` answers with another digest, `error` raises."""

    def __init__(self, held: dict[tuple[str, str], str], error: Exception | None = None) -> None:
        self.held, self.error, self.asked = held, error, []

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        self.asked.append((repository, reference))
        if self.error is not None:
            raise self.error
        return self.held.get((repository, reference))


def test_present_and_absent_manifests_are_told_apart():
    here, missing = digest("here"), digest("missing")
    target = FakeTarget({("a/b", here): here})
    state = survey({"eu": target}, {"eu": {("a/b", here), ("a/b", missing)}}, concurrency=2)
    assert state.present["eu"] == frozenset({("a/b", here)}) and state.asked["eu"] == 2
    assert state.holds("eu", "a/b", here) and not state.holds("eu", "a/b", missing)


def test_a_target_answering_with_another_digest_is_refused():
    asked = digest("asked")
    with pytest.raises(TargetRewritesDigests, match="mirror target eu: answers for a/b@"):
        survey({"eu": FakeTarget({("a/b", asked): digest("other")})}, {"eu": {("a/b", asked)}})


@pytest.mark.parametrize("error, words", [
    (SourceForbidden("registry", "HEAD /v2/a/b/manifests/x", "HTTP 401", "fix"), "refused"),
    (SourceUnavailable("registry", "HEAD /v2/a/b/manifests/x", "connection failed", "fix"), "could not be read"),
])
def test_a_target_that_cannot_be_read_stops_the_planning_naming_it(error, words):
    with pytest.raises(TargetError, match=f"mirror target eu: .*{words}"):
        survey({"eu": FakeTarget({}, error)}, {"eu": {("a/b", digest("x"))}})


def test_the_fingerprint_changes_with_what_a_target_holds():
    one, two = digest("one"), digest("two")
    first = survey({"eu": FakeTarget({("a/b", one): one})}, {"eu": {("a/b", one), ("a/b", two)}})
    second = survey({"eu": FakeTarget({("a/b", one): one, ("a/b", two): two})}, {"eu": {("a/b", one), ("a/b", two)}})
    assert first.fingerprint() != second.fingerprint()
