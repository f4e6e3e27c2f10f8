"""The package says it is MIT-licensed, and ships the licence: a LICENSE file with the MIT text,
named in ``license-files`` so that the wheel and the sdist carry it (hatchling includes the
files ``license-files`` names in both; a wheel built by hand shows it under ``.dist-info``)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent

#: The MIT licence's text after its copyright line (https://opensource.org/license/mit).
MIT_BODY = """\
Permission is hereby granted, free of charge, to any person obtaining a copy of this software \
and associated documentation files (the "Software"), to deal in the Software without \
restriction, including without limitation the rights to use, copy, modify, merge, publish, \
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the \
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or \
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING \
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND \
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, \
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, \
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def _words(text: str) -> list[str]:
    return text.split()  # the licence's words, however its lines are wrapped


def test_the_metadata_names_the_mit_license_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]


def test_the_license_file_is_the_mit_license() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    title, copyright_line, body = text.split("\n\n", 2)
    assert title == "MIT License"
    assert copyright_line == "Copyright (c) 2026 callthrottle developers"
    assert _words(body) == _words(MIT_BODY)
