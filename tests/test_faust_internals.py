"""Faust's private internals are used in one module, for the releases it was tested with."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_faust_pin_is_the_tested_range() -> None:
    from packaging.requirements import Requirement

    from streams.faust_fixes import TESTED

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [pin] = [Requirement(d) for d in dependencies if d.startswith("faust-streaming")]
    assert pin.specifier == TESTED


def test_no_module_but_faust_fixes_touches_a_private_faust_name() -> None:
    """Outside ``streams/faust_fixes.py`` (and the embedded broker's own work-arounds), no module
    imports an underscored name from Faust or calls an underscored method of a stream."""
    offenders = []
    for path in (ROOT / "streams").rglob("*.py"):
        if path.name in ("faust_fixes.py", "embedded_broker.py"):
            continue
        text = path.read_text()
        if re.search(r"from faust\S* import .*\b_[a-z]", text) or re.search(r"\bstream\._[a-z]", text) or \
                "channel.queue" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
