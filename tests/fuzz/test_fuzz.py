"""A short fuzzing run in the test suite (tens of seconds): generated values through the parsers,
mutated clips of every seed container and codec through `vir degrade` (see harness.py). The
long run is `scripts/fuzz.py --minutes N`; docs/robustness.md reports one."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import parsers
from tests.fuzz.harness import CLIPS, fuzz_clips

# derandomized: the suite runs the same examples every time (the long run draws new ones)
SHORT = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(parsers.PARSERS))
def test_parser_refuses_in_one_line_or_accepts_what_is_in_range(name):
    strategy, check = parsers.PARSERS[name]
    seen: Counter = Counter()

    @SHORT
    @given(strategy())
    def run(value):
        seen[check(value)] += 1

    run()
    assert seen["ok"] > 0 and sum(seen.values()) - seen["ok"] > 0, seen   # both sides were reached
    assert set(seen) <= {"ok", f"exit-{parsers.EXIT_CODES[name]}"}, seen   # refusals carry the documented code


def test_mutated_clips_never_pass_silently(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    tally = fuzz_clips(work, count=3 * len(CLIPS), seed=0)
    assert tally.inputs == 3 * len(CLIPS)
    assert not tally.failures, tally.failures
    assert set(tally.by_clip) == set(CLIPS)
    assert any(k.startswith("exit-") for k in tally.outcomes), tally.outcomes
