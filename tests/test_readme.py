"""The README's quickstart runs as written, and CI runs the README's test command."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_a_quickstart() -> None:
    assert python_blocks(), "README.md lost its python example"


#: What each python block of the README prints (found by the first of these it contains).
EXPECTED = {
    "PrometheusHook": ['callthrottle_slots_in_use{number="+8657188880001"} 1.0'],
    "SyncThrottle": ["dialing from +8657188880001 (blocking API)"],
    "throttle.slot_from(": [
        "calling +8657112345678 from +8657188880001 of pool hangzhou-sales",
    ],
    "session=": ["still counted: 1", "hang-up: released"],
    "throttle.slot(": [
        "dialing from +8657188880001",
        "1/20 in use, 0 waiting",
        "number full: no free slot on number '+8657188880001'",
    ],
}


@pytest.mark.parametrize("block", python_blocks())
def test_python_blocks_run_as_written(
    block: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})  # noqa: S102 - our own README
    # An example runs clean: a warning (a lease left held at close, ...) is a mistake in it.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    out = capsys.readouterr().out
    expected = [lines for marker, lines in EXPECTED.items() if marker in block][:1]
    assert expected, "a README python block with no expected output"
    for line in expected[0]:
        assert line in out


def test_ci_runs_the_readme_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("python dev.py test", "python dev.py lint"):
        assert command in README
        assert f"python3 {command.removeprefix('python ')}" in ci


def test_toml_blocks_are_valid_configurations(tmp_path: Path) -> None:
    from callthrottle import Config, Window

    blocks = re.findall(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "README.md lost its configuration example"
    for block in blocks:
        path = tmp_path / "carriers.toml"
        path.write_text(block, encoding="utf-8")
        config = Config.from_toml(path)
        assert config.cap_for("+8657188880001", default=99) == 15
        assert Window(5, 86400.0) in config.callee_windows
        assert config.pools["hangzhou-sales"].fallback == "national"
        assert config.pools["hangzhou-sales"].strategy == "local"
