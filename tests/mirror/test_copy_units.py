"""The copier's pure parts: the bandwidth throttle and the order a unit is written in."""
from __future__ import annotations

from registry_lifecycle.mirror.copy import Throttle, _referrer_tags

from tests.mirror.worlds import digest


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_the_throttle_holds_the_average_rate_after_a_one_second_burst():
    clock = FakeClock()
    throttle = Throttle(1000, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        throttle.take(100)          # 5,000 bytes: one second of burst, then four seconds of waiting
    assert 3.9 <= clock.now <= 4.1


def test_no_limit_never_waits():
    clock = FakeClock()
    throttle = Throttle(None, clock=clock, sleep=clock.sleep)
    throttle.take(10**12)
    assert clock.slept == 0


def test_referrer_tags_are_the_fallback_index_and_cosign_suffixes_of_that_digest_only():
    subject = digest("subject")
    hex_part = subject.removeprefix("sha256:")
    tags = ["v1", f"sha256-{hex_part}", f"sha256-{hex_part}.sig", f"sha256-{hex_part}.att",
            f"sha256-{hex_part}x", f"sha256-{digest('other').removeprefix('sha256:')}.sig"]
    assert _referrer_tags(tags, subject) == [f"sha256-{hex_part}", f"sha256-{hex_part}.sig", f"sha256-{hex_part}.att"]
