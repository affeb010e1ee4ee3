"""The package's shape (issue 16): small modules, so that each is read in one sitting."""

from __future__ import annotations

from pathlib import Path

import edge

MAX_LINES = 500


def test_no_module_of_the_package_is_over_the_limit() -> None:
    root = Path(edge.__file__).parent
    sizes = {p.relative_to(root): len(p.read_bytes().splitlines()) for p in root.rglob("*.py")}
    assert len(sizes) > 50  # the package itself, not an empty folder
    over = {str(p): n for p, n in sizes.items() if n > MAX_LINES}
    assert over == {}, f"split these first (limit {MAX_LINES} lines): {over}"
