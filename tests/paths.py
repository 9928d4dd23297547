"""Where things are, for every test layer: the repository, the tests' own
data and the shared material beside the repository."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = REPO.parent / "shared"
