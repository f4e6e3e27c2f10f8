"""``callthrottle policy diff``: every difference that makes two policies differ is shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.cli.test_policy import A, B

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

pytestmark = pytest.mark.redis


def test_diff_names_a_number_listed_without_settings(
    invoke: Callable[..., Result], redis_args: list[str], tmp_path: Path
) -> None:
    """B is listed with no setting of its own (it takes the default profile): the policies
    differ (another digest, so a throttle opened with one finds the other a mismatch), and
    the diff must say how."""
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text(f'[numbers."{A}"]\ncap = 3\n', encoding="utf-8")
    v2.write_text(f'[numbers."{A}"]\ncap = 3\n[numbers."{B}"]\n', encoding="utf-8")
    assert invoke("policy", "apply", *redis_args, str(v1), "--yes").exit_code == 0
    result = invoke("policy", "diff", *redis_args, str(v2))
    assert result.exit_code == 1, result.output
    assert B in result.stdout, result.stdout
