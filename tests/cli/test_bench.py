"""``callthrottle bench``: it measures what it says (no speed is asserted)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

ROW = r"{}\s*│\s*[\d.]+\s*│\s*[\d.]+\s*│\s*{}"


def test_bench_on_memory(invoke: Callable[..., Result]) -> None:
    result = invoke("bench", "--iterations", "100")
    assert result.exit_code == 0, result.output
    assert re.search(ROW.format("acquire\\+release", ""), result.stdout), result.stdout
    assert "EVALSHA" not in result.stdout


@pytest.mark.redis
@pytest.mark.parametrize(
    "server", ["redis_url", pytest.param("cluster_url", marks=pytest.mark.cluster)]
)
def test_bench_on_redis_measures_the_floor_in_the_same_run(
    invoke: Callable[..., Result], server: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(server)
    result = invoke("bench", "--url", url, "--prefix", prefix, "--iterations", "100")
    assert result.exit_code == 0, result.output
    assert re.search(ROW.format("acquire\\+release", r"[\d.]+x"), result.stdout), result.stdout
    assert re.search(ROW.format(r"2x EVALSHA 'return 1' \(floor\)", "1.00x"), result.stdout)


def test_bench_refuses_too_few_iterations(invoke: Callable[..., Result]) -> None:
    result = invoke("bench", "--iterations", "5")
    assert result.exit_code == 2
    assert "--iterations" in result.stderr
