"""``top`` while a policy is published: from then on it shows the caps every throttle
enforces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.cli.test_top import A, Top

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

pytestmark = pytest.mark.redis


def test_top_shows_the_caps_of_a_policy_published_while_it_runs(
    invoke: Callable[..., Result], redis_args: list[str], tmp_path: Path
) -> None:
    v1, v2 = tmp_path / "v1.toml", tmp_path / "v2.toml"
    v1.write_text(f'[numbers."{A}"]\ncap = 3\n', encoding="utf-8")
    v2.write_text(f'[numbers."{A}"]\ncap = 1\n', encoding="utf-8")
    assert invoke("policy", "apply", *redis_args, str(v1), "--yes").exit_code == 0
    top = Top(*redis_args, "--iterations", "100", "--interval", "0.1")
    try:
        row = top.wait_for(A)
        assert "0/3" in top.lines[row]
        assert invoke("policy", "apply", *redis_args, str(v2), "--yes").exit_code == 0
        top.wait_for("policy v2", after=row)
        row = top.wait_for(A, after=top.wait_for("policy v2", after=row))
        assert "0/1" in top.lines[row]
    finally:
        top.close()
