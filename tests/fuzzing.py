"""How many inputs a fuzz test tries.

Every hypothesis test that feeds hostile input to a parser or a protocol
handler takes its example count from :func:`examples`, so the suite stays
bounded while ``make fuzz`` runs the same tests much longer:
``REMSIM_FUZZ_SCALE`` multiplies each test's count (1 in the suite). Mark such
tests ``@pytest.mark.fuzz`` so ``make fuzz`` can select them.
"""

from __future__ import annotations

import os


def scale() -> int:
    """The multiplier from ``REMSIM_FUZZ_SCALE`` (at least 1)."""
    try:
        return max(1, int(os.environ.get("REMSIM_FUZZ_SCALE", "1")))
    except ValueError:
        return 1


def examples(count: int) -> int:
    """``count`` inputs in the suite; ``count`` times the scale under ``make fuzz``."""
    return count * scale()
