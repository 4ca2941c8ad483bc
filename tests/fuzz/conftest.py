"""Hypothesis settings for the fuzz tests: a short run for CI, a long one to run by hand.

CI uses the "ci" profile (about a minute for the whole folder on 2 cores). For a long run:

    EDGETRIM_FUZZ_PROFILE=long .venv/bin/python -m pytest tests/fuzz -q

The "long" profile tries 50 times more examples. Both keep no example database, so runs do
not write into the repository, and both disable the per-example deadline, because some
examples decompress or hash a few MiB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=100, **_COMMON)
settings.register_profile("long", max_examples=5000, **_COMMON)
settings.load_profile(os.environ.get("EDGETRIM_FUZZ_PROFILE", "ci"))


def examples(share: float) -> settings:
    """Settings with ``share`` of the profile's examples, for the slower fuzz targets."""
    return settings(max_examples=max(10, int(settings().max_examples * share)))


@pytest.fixture(autouse=True, scope="module")
def small_limits() -> Iterator[None]:
    """Keep every example small: no layer or archive may expand past 64 MiB here.

    Module scope, because Hypothesis rejects function-scoped fixtures in @given tests.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGETRIM_MAX_LAYER_SIZE", "64M")
        patch.setenv("EDGETRIM_MAX_ARCHIVE_SIZE", "64M")
        yield
