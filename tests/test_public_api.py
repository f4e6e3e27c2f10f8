"""The public surface: names, error hierarchy, typing marker."""

from __future__ import annotations

import importlib.resources
import inspect

import pytest

import callthrottle
import callthrottle.backends
from callthrottle import (
    AcquireTimeout,
    BackendUnavailable,
    InvalidArgument,
    LeaseConflict,
    ThrottleError,
    UnknownScheme,
    UnsupportedEventLoop,
)


@pytest.mark.parametrize("module", [callthrottle, callthrottle.backends])
def test_all_lists_exactly_the_public_names(module: object) -> None:
    exported = set(module.__all__)  # type: ignore[attr-defined]
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert exported == public
    assert list(module.__all__) == sorted(module.__all__)  # type: ignore[attr-defined]


def test_public_names_show_the_package_module() -> None:
    assert callthrottle.Throttle.__module__ == "callthrottle"
    assert repr(callthrottle.Lease("+1", "t")) == "Lease(number='+1', token='t') <held>"


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (InvalidArgument, (ThrottleError, ValueError)),
        (UnknownScheme, (InvalidArgument,)),
        (LeaseConflict, (ThrottleError, ValueError)),
        (AcquireTimeout, (ThrottleError, TimeoutError)),
        (BackendUnavailable, (ThrottleError,)),
        (UnsupportedEventLoop, (ThrottleError, RuntimeError)),
    ],
)
def test_error_hierarchy(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert issubclass(error, base)


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    assert callthrottle.__version__ == version("callthrottle")


def test_package_is_typed() -> None:
    assert importlib.resources.files("callthrottle").joinpath("py.typed").is_file()


def test_release_outcome_is_a_plain_enum_of_words() -> None:
    assert [(o.name, o.value) for o in callthrottle.ReleaseOutcome] == [
        ("RELEASED", "released"),
        ("EXPIRED", "expired"),
        ("UNKNOWN", "unknown"),
    ]
    assert callthrottle.ReleaseOutcome.__module__ == "callthrottle"
