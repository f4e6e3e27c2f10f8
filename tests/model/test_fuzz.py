"""Bad input, generated: every refusal is an InvalidArgument that names the argument, and
nothing is written. No other exception may escape (a TypeError from deep inside would be a
bug: the caller could not tell bad input from a broken library)."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callthrottle import Config, ConfigError, InvalidArgument, Throttle
from callthrottle._url import SCHEMES
from callthrottle.backends import MemoryBackend

NUMBER = "+8657188880001"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def run(function: Any, *args: Any) -> Any:
    return anyio.run(function, *args, backend="asyncio")


@SETTINGS
@given(
    number=st.one_of(junk, st.from_regex(r"\+?[0-9 ()-]{0,20}", fullmatch=True)),
    token=st.one_of(junk, st.just("ok")),
    timeout=st.one_of(junk, st.just(0)),
    limit=st.one_of(junk, st.just(None)),
    callee=st.one_of(junk, st.just(None)),
    priority=st.one_of(junk, st.just(0)),
)
def test_acquire_refuses_bad_arguments_by_name_and_writes_nothing(
    number: Any, token: Any, timeout: Any, limit: Any, callee: Any, priority: Any
) -> None:
    backend = MemoryBackend()

    async def attempt() -> None:
        async with Throttle(backend) as throttle:
            refused: InvalidArgument | None = None
            try:
                lease = await throttle.acquire(
                    number, token=token, timeout=timeout, limit=limit, callee=callee,
                    priority=priority,
                )  # fmt: skip
            except InvalidArgument as exc:
                refused = exc
            else:
                await throttle.release(lease)
            if refused is not None:
                names = {"number", "token", "timeout", "limit", "callee", "priority"}
                assert refused.argument in names
                assert backend._numbers == {}  # nothing written

    run(attempt)


@SETTINGS
@given(pool=st.one_of(junk, st.just("p")), numbers=st.one_of(junk, st.lists(junk, max_size=3)))
def test_pool_calls_refuse_bad_arguments_by_name_and_write_nothing(pool: Any, numbers: Any) -> None:
    backend = MemoryBackend()

    async def attempt() -> None:
        async with Throttle(backend) as throttle:
            refused: InvalidArgument | None = None
            try:
                await throttle.add_to_pool(pool, numbers)
            except InvalidArgument as exc:
                refused = exc
            if refused is not None:
                assert refused.argument in {"pool", "numbers", "number"}
                assert backend._pools == {}

    run(attempt)


config_values = st.recursive(
    junk,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(
                ["cap", "rates", "numbers", "profile", "trunk", "tenant", "strategy", "fallback",
                 "daily_reset", "warmup", "reserve", "action", "seconds", NUMBER, "a", "b"]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=8,
)  # fmt: skip


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(
            ["default_region", "default_profile", "default_tenant", "timezone", "profiles",
             "numbers", "trunks", "tenants", "callee", "feedback", "pools", "other"]
        ),
        config_values,
        max_size=4,
    )
)  # fmt: skip
def test_configuration_is_valid_or_refused_by_key(data: dict[str, Any]) -> None:
    refused: ConfigError | None = None
    try:
        Config.from_dict(data)
    except ConfigError as exc:
        refused = exc
    assert refused is None or refused.argument.startswith("config")


@SETTINGS
@given(
    st.one_of(
        junk,
        st.text(max_size=60),
        st.from_regex(r"[a-z+]{0,12}://[^\s]{0,30}"),
        st.builds("{}://{}".format, st.sampled_from(sorted(SCHEMES)), st.text(max_size=40)),
    )
)
def test_urls_are_served_or_refused_clearly(url: Any) -> None:
    refused: InvalidArgument | None = None
    try:
        Throttle.from_url(url)
    except InvalidArgument as exc:
        refused = exc
    assert refused is None or refused.argument in {"url", "options"}
