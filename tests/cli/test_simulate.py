"""``callthrottle simulate`` end to end, on memory and on Redis, and its reports."""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.metadata
import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from callthrottle.simulate import caller_ids

if TYPE_CHECKING:
    from collections.abc import Callable

    from click.testing import Result

#: A short campaign: 60 simulated seconds at 60x, calls of 10 s on average.
QUICK = ["--duration", "60", "--speed", "60", "--call-length", "exp:10", "--timeout", "5"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self._in_heading = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self.headings.append(data)
            self._in_heading = False


def _decodes_as_png(data: bytes) -> tuple[int, ...]:
    from matplotlib.image import imread

    assert data.startswith(PNG_SIGNATURE)
    shape: tuple[int, ...] = imread(io.BytesIO(data), format="png").shape
    return shape


def _check_summary(result: Result, numbers: list[str]) -> None:
    assert result.exit_code == 0, result.output
    out = result.stdout
    for number in numbers:
        assert number in out
    assert "every number stayed within its cap" in out
    assert "refusals by reason" in out
    assert "✗" not in out


def test_simulate_on_memory_writes_html_and_png_reports(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    html, png = tmp_path / "report.html", tmp_path / "report.png"
    result = invoke(
        "simulate", *QUICK, "--agents", "12", "--caps", "4,2", "--report", str(html),
        "--report", str(png),
    )  # fmt: skip
    _check_summary(result, caller_ids(2))
    assert f"report written to {html}" in result.stdout

    parser = _Images()
    parser.feed(html.read_text(encoding="utf-8"))
    assert parser.headings == [
        "Summary", "Numbers", "Refusals", "Each number over time", "Waits for a slot", "Run",
    ]  # fmt: skip
    assert len(parser.images) == 2
    for src in parser.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)  # embedded: the page stands alone
        height, width, _ = _decodes_as_png(base64.b64decode(src[len(prefix) :]))
        assert width == 1000
        assert height > 200
    height, width, _ = _decodes_as_png(png.read_bytes())
    assert (width, height) == (1000, 710)  # 100 dpi: 2.2 in per chart (2 numbers, waits) + 0.5


@pytest.mark.redis
def test_simulate_on_redis_from_a_pool(
    invoke: Callable[..., Result], redis_url: str, prefix: str
) -> None:
    result = invoke(
        "simulate", *QUICK, "--url", redis_url, "--prefix", prefix, "--agents", "12",
        "--caps", "3,2,2", "--pool", "campaign", "--reject-rate", "0.05",
    )  # fmt: skip
    _check_summary(result, caller_ids(3))
    assert "from pool campaign" in result.stdout
    assert "timed out: no number of the pool free" in result.stdout  # 12 agents for 7 slots
    # The pool's own row: its failed attempts belong to no number.
    [row] = [line.split("│") for line in result.stdout.splitlines() if "│ pool campaign" in line]
    assert row[2].strip() == "7"  # the pool's slots
    assert re.match(r"\d+ no number of the pool", row[7].strip()), row
    assert "carrier answered 503" in result.stdout


@pytest.mark.redis
def test_simulate_dials_the_configured_numbers(
    invoke: Callable[..., Result], redis_url: str, prefix: str, tmp_path: Path
) -> None:
    config = tmp_path / "carriers.toml"
    config.write_text(
        '[numbers."+8657188880011"]\ncap = 2\n[numbers."+8657188880012"]\ncap = 1\n',
        encoding="utf-8",
    )
    result = invoke(
        "simulate", *QUICK, "--url", redis_url, "--prefix", prefix, "--config", str(config),
        "--agents", "6",
    )  # fmt: skip
    _check_summary(result, ["+8657188880011", "+8657188880012"])


def _readme_configuration(tmp_path: Path) -> Path:
    """The README's carriers.toml, verbatim."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)
    path = tmp_path / "carriers.toml"
    path.write_text(block, encoding="utf-8")
    return path


@pytest.mark.parametrize("where", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_simulate_from_the_readme_pool_counts_members_not_under_numbers(
    invoke: Callable[..., Result], where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # hangzhou-sales lists +8657188880002, which [numbers] does not; its fallback pool lists
    # two more: each takes its settings from the default profile (cap 20), as in the throttle.
    config = _readme_configuration(tmp_path)
    url = ["--url", "memory://"]
    if where == "redis":
        url = ["--url", request.getfixturevalue("redis_url")]
        url += ["--prefix", request.getfixturevalue("prefix")]
    result = invoke(
        "simulate", *QUICK, *url, "--pool", "hangzhou-sales", "--config", str(config),
        "--agents", "12",
    )  # fmt: skip
    _check_summary(result, ["+8657188880001", "+8657188880002", "+861088880001", "+862188880001"])
    counts = result.stdout.split("per number over time")[0]  # the first table
    rows = [line.split("│") for line in counts.splitlines() if line.startswith("│ +")]
    caps = {row[1].strip(): row[2].strip() for row in rows}
    assert caps == {
        "+8657188880001": "15", "+8657188880002": "20", "+861088880001": "20",
        "+862188880001": "20",
    }  # fmt: skip


def test_simulate_dials_a_configured_pool_when_no_number_is_configured(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    config = tmp_path / "carriers.toml"
    config.write_text(
        '[pools.sales]\nnumbers = ["+8657188880021", "+8657188880022"]\n', encoding="utf-8"
    )
    result = invoke(
        "simulate", *QUICK, "--pool", "sales", "--config", str(config), "--agents", "4",
    )  # fmt: skip
    _check_summary(result, ["+8657188880021", "+8657188880022"])
    assert caller_ids(1)[0] not in result.stdout  # not the default numbers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--call-length", "normal:90"], "--call-length"),
        (["--caps", "20,0"], "a comma-separated list of caps >= 1, got '20,0'"),
        (["--numbers", "3", "--caps", "20,15"], "--numbers 3 but --caps lists 2 caps"),
        (["--reject-rate", "1.5"], "--reject-rate"),
        (["--reject-code", "busy"], "outcome must be a SIP status or carrier code"),
        (["--report", "out.pdf"], "out.pdf must end in .html or .png"),
        (["--speed", "0"], "--speed"),
    ],
)
def test_simulate_refuses_bad_input(
    invoke: Callable[..., Result], args: list[str], message: str
) -> None:
    result = invoke("simulate", *QUICK, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


@pytest.mark.parametrize("where", ["/no/such/dir", "a-file"])
def test_simulate_checks_the_report_path_before_the_campaign(
    invoke: Callable[..., Result], where: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    directory = tmp_path / where if where == "a-file" else Path(where)
    result = invoke("simulate", *QUICK, "--duration", "6000", "--report", f"{directory}/r.html")
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--report': {directory} is not a directory" in result.stderr
    assert "agents dialing" not in result.stdout  # refused before the campaign started
    assert "Traceback" not in result.output


def test_simulate_without_the_report_extra_stops_before_the_campaign(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    result = invoke("simulate", *QUICK, "--duration", "6000", "--report", str(tmp_path / "r.png"))
    assert result.exit_code == 2, result.output
    assert "pip install 'callthrottle[report]'" in result.stderr
    assert "agents dialing" not in result.stdout


def test_python_m_simulate_runs_the_same_command() -> None:
    argv = [sys.executable, "-m", "callthrottle.simulate", *QUICK, "--duration", "30"]
    args = [*argv, "--caps", "2", "--agents", "3"]
    done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "every number stayed within its cap" in done.stdout


#: A campaign that collapses: two numbers, half the calls answered 477 (an hour's cool-down,
#: longer than the campaign), so after its first refusal a number refuses every attempt.
COOLING = [
    "--duration", "120", "--speed", "60", "--call-length", "fixed:10", "--timeout", "5",
    "--caps", "3,3", "--agents", "8", "--reject-rate", "0.5", "--reject-code", "477",
    "--seed", "3",
]  # fmt: skip
HEADLINE = (
    "attempts refused: numbers cooling down after the carrier answered 477 "
    "(477 caller number over-frequency)"
)


def _cooling_pixels(png: bytes) -> int:
    """The pixels of the report's charts shaded as "cooling down" (its band's colour)."""
    from matplotlib.image import imread

    from callthrottle.cli._charts import BANDS

    color = BANDS["cooling"][0]
    rgb = tuple(int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    image = imread(io.BytesIO(png), format="png")
    return sum(
        1 for row in image for pixel in row if all(abs(pixel[i] - rgb[i]) < 0.01 for i in range(3))
    )


@pytest.mark.parametrize("where", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_collapsing_campaign_says_why_on_the_command_line_and_in_the_report(
    invoke: Callable[..., Result], where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = ["--url", "memory://"]
    if where == "redis":
        url = ["--url", request.getfixturevalue("redis_url")]
        url += ["--prefix", request.getfixturevalue("prefix")]
    page = tmp_path / "report.html"
    result = invoke("simulate", *COOLING, *url, "--report", str(page))
    assert result.exit_code == 0, result.output  # no number went over its cap
    out = " ".join(result.stdout.split())  # the summary's lines, unwrapped
    assert "most attempts did not become calls:" in out
    assert HEADLINE in out
    assert "every number stayed within its cap" in out
    assert "refused: cooling down (477 caller number over-frequency)" in out

    text = page.read_text(encoding="utf-8")
    # The same words in the page: the headline, the per-number table, the states.
    assert HEADLINE in text
    assert "<th>timed out</th><th>refused</th><th>why</th><th>states</th>" in text
    rows = re.findall(r"<tr><td class=\"text\">(\+\d+)</td>(.*?)</tr>", text)
    assert [number for number, _ in rows] == caller_ids(2)
    for _, row in rows:
        assert re.search(r'<td class="text">\d+ cooling down', row)  # why
        assert re.search(r'<td class="text">[^<]*cooling down \d+ s', row)  # states
    # The chart shades the time spent cooling down.
    parser = _Images()
    parser.feed(text)
    chart = base64.b64decode(parser.images[0].removeprefix("data:image/png;base64,"))
    assert _cooling_pixels(chart) > 10000
    # The run's metadata: date, version, backend, options.
    version = importlib.metadata.version("callthrottle")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, callthrottle " + version, text)
    assert f"backend {html.escape(url[1])}" in text
    assert '<td class="text">--reject-code</td><td class="text">477</td>' in text
    assert "No configuration file" in text


def test_fail_on_collapse_exits_3(invoke: Callable[..., Result]) -> None:
    result = invoke("simulate", *COOLING, "--fail-on-collapse")
    assert result.exit_code == 3, result.output
    assert HEADLINE in " ".join(result.stdout.split())
    calm = invoke("simulate", *QUICK, "--caps", "4,2", "--agents", "6", "--fail-on-collapse")
    assert calm.exit_code == 0, calm.output
    assert "most attempts did not become calls" not in calm.stdout


def test_the_report_shows_the_configuration_used_and_hides_the_password(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    config = tmp_path / "carriers.toml"
    config.write_text('[numbers."+8657188880011"]\ncap = 2\n', encoding="utf-8")
    page = tmp_path / "report.html"
    url = "memory://:s3cret@localhost"  # the memory backend ignores a password
    result = invoke(
        "simulate", *QUICK, "--url", url, "--config", str(config), "--agents", "3",
        "--report", str(page),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert "s3cret" not in text
    assert "backend memory://:***@localhost" in text
    assert f"<p>{config}:</p><pre>[numbers.&quot;+8657188880011&quot;]\ncap = 2\n</pre>" in text


@pytest.mark.redis
def test_a_campaign_on_a_fenced_server_says_so(
    invoke: Callable[..., Result], redis_url: str, prefix: str
) -> None:
    # A fresh key prefix whose fence marker is gone after the library saw it: that prefix is
    # fenced for a lease TTL (30 s), longer than the campaign: no call is placed.
    import redis

    client = redis.Redis.from_url(redis_url)
    warm = invoke("simulate", *QUICK, "--url", redis_url, "--prefix", prefix, "--duration", "6")
    assert warm.exit_code == 0, warm.output
    client.delete(f"{prefix}fence")
    result = invoke(
        "simulate", *QUICK, "--url", redis_url, "--prefix", prefix, "--duration", "30",
        "--caps", "2", "--agents", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "0 calls placed of" in out
    assert "most attempts did not become calls:" in out
    assert "attempts timed out: backend fenced (it may have lost calls up)" in out
    assert "`callthrottle lift-fence` ends that at once" in out


#: Three numbers in Shanghai; the third is paid until January 31st (it lapses at midnight
#: between January 31st and February 1st, Shanghai time).
PAID_UNTIL = """timezone = "Asia/Shanghai"

[numbers."+8657188880001"]
cap = 3
[numbers."+8657188880002"]
cap = 3
[numbers."+8657188880003"]
cap = 3
paid_until = 2027-01-31
"""
#: Four simulated hours from 22:00 on January 31st, in 3 real seconds.
ACROSS_MIDNIGHT = [
    "--start", "2027-01-31T22:00", "--duration", "14400", "--speed", "4800", "--call-length",
    "exp:60", "--timeout", "30", "--agents", "8",
]  # fmt: skip


@pytest.mark.parametrize("where", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_simulate_across_the_day_a_paid_period_ends(
    invoke: Callable[..., Result], where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # Needs Line.acquire to refuse a lapsed number (NumberUnavailable, state "expired").
    config = tmp_path / "carriers.toml"
    config.write_text(PAID_UNTIL, encoding="utf-8")
    page = tmp_path / "report.html"
    url = ["--url", "memory://"]
    if where == "redis":
        url = ["--url", request.getfixturevalue("redis_url")]
        url += ["--prefix", request.getfixturevalue("prefix")]
    result = invoke(
        "simulate", *ACROSS_MIDNIGHT, *url, "--config", str(config), "--report", str(page)
    )
    _check_summary(result, caller_ids(3))
    out = result.stdout
    assert "for 14400 simulated s (4800x) from 2027-01-31 22:00 (Asia/Shanghai) on" in out
    said = re.compile(
        r"\+8657188880003 left the campaign on 2027-02-01 00:[01]\d \(Asia/Shanghai\): paid "
        r"until 2027-01-31, expired; its last call began (2027-01-31 23:[45]\d|2027-02-01 "
        r"00:00); the other numbers placed \d+ calls after it left"
    )
    # (The terminal wraps long lines.) The first time it was seen out: an attempt on it was
    # refused, or its status said so.
    assert said.search(" ".join(out.split())), out
    assert "refused: expired (paid until 2027-01-31; the carrier releases it on 2027-02-08" in out
    text = html.unescape(page.read_text(encoding="utf-8"))
    assert said.search(text)
    assert "2027-01-31 22:00 (Asia/Shanghai)" in text  # the run: --start as it took effect


def test_simulate_starts_its_calendar_now_unless_told(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    result = invoke("simulate", *QUICK, "--agents", "2", "--caps", "2")
    _check_summary(result, caller_ids(1))
    [header] = [line for line in result.stdout.splitlines() if "agents dialing" in line]
    began = re.search(r"from (\d{4}-\d\d-\d\d \d\d:\d\d) \(UTC\) on memory://", header)
    assert began is not None, header
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert abs(dt.datetime.fromisoformat(began[1]) - now) < dt.timedelta(minutes=2)


@pytest.mark.parametrize(
    "start", ["2027-02-30T09:00", "next monday", "2027-01-30T24:30", "9999-12-31T23:59"]
)
def test_simulate_refuses_a_bad_start_before_the_campaign(
    invoke: Callable[..., Result], start: str
) -> None:
    result = invoke("simulate", *QUICK, "--start", start)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--start'" in result.stderr
    assert "start must be a date and time such as 2027-01-30T09:00" in result.stderr
    assert repr(start) in result.stderr
    assert "agents dialing" not in result.stdout  # nothing ran


def test_the_chart_marks_when_a_number_left(tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    from callthrottle.cli._charts import _number
    from callthrottle.simulate import CampaignResult, Departure, NumberReport

    report = NumberReport(caller_ids(1)[0], 3)
    report.timeline, report.queue, report.states = [3, 3, 0], [0.0] * 3, ["active"] * 3
    report.limits = [3] * 3
    report.saw(Departure(5000.0, "expired", "paid until 2027-01-31; ...", "refused"))
    start = dt.datetime(2027, 1, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    result = CampaignResult([report], 7200.0, 60.0, 2400.0, start=start)
    ax = Figure().subplots()
    _number(ax, report, result)
    [line] = [line for line in ax.get_lines() if str(line.get_label()).startswith("left")]
    assert line.get_label() == "left: expired (2027-01-31 16:23)"  # UTC: no zone configured
    assert np.asarray(line.get_xdata(), dtype=float).tolist() == [5000.0, 5000.0]
