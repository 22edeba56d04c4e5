"""Without ``../shared/data`` the real-data tests skip on a user's clone and fail in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_data_fails_in_ci_and_skips_elsewhere(monkeypatch, tmp_path: Path, ci: str, outcome) -> None:
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "no-such-folder")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="real data not found at .*no-such-folder"):
        conftest.require_shared_data()
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
    assert conftest.require_shared_data() == tmp_path
