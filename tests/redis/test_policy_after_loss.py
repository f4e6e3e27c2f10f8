"""The published policy after Redis lost it (the README: "publish it again (`policy apply` the
file)"): the policy published again must be the one every process enforces."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from callthrottle import AcquireTimeout, Throttle
from callthrottle.backends import RedisBackend

if TYPE_CHECKING:
    import redis

pytestmark = [pytest.mark.redis]

N1 = "+8657188880001"


def config(cap: int) -> dict[str, Any]:
    return {"default_profile": "fixed", "profiles": {"fixed": {"cap": cap}}}


async def test_a_policy_published_again_after_a_loss_binds_the_throttles_that_ran_before(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """Versions 1 (cap 3) and 2 (cap 4) were published, then the server lost the prefix's
    keys. An operator publishes the policy again (cap 1, now version 1). The dialer that ran
    through the loss still has version 2: its request raises the slot's stamp back to 2, it
    is admitted under cap 4, and every throttle that took the new version 1 is refused as
    stale for ever."""

    def throttle(**options: Any) -> Throttle:
        backend = RedisBackend.from_url(redis_url, key_prefix=prefix)
        return Throttle(backend, close_backend=True, lease_ttl=600, **options)

    async with throttle(config=config(3), policy="follow") as running:
        await running.publish_policy()
        await running.publish_policy(config(4))
        assert running.policy_version == 2
        sync_client.delete(*sync_client.keys(prefix + "*"))  # the data is lost
        await running.backend.lift_fence()  # no call is up: no fence needed
        async with throttle(config=config(1)) as operator:
            published = await operator.publish_policy(comment="published again after the loss")
            assert published.version == 1
            await operator.acquire(N1, timeout=0)  # the newest policy: cap 1, now full
            # The dialer that ran through the loss must decide under cap 1 too.
            with pytest.raises(AcquireTimeout):
                await running.acquire(N1, timeout=0)


async def test_after_a_loss_a_throttle_of_the_policy_published_again_is_not_refused_for_ever(
    redis_url: str, prefix: str, sync_client: redis.Redis
) -> None:
    """The same loss: once the dialer that ran through it asked (with version 2), the
    throttles of the policy published again (version 1) are refused as stale at every
    acquire, and `policy restore` cannot help (the history went with the data)."""

    def throttle(**options: Any) -> Throttle:
        backend = RedisBackend.from_url(redis_url, key_prefix=prefix)
        return Throttle(backend, close_backend=True, lease_ttl=600, **options)

    async with throttle(config=config(3), policy="follow") as running:
        await running.publish_policy()
        await running.publish_policy(config(4))
        sync_client.delete(*sync_client.keys(prefix + "*"))  # the data is lost
        await running.backend.lift_fence()
        await running.release(await running.acquire(N1, timeout=0))  # its next call
        async with throttle(config=config(1)) as operator:
            await operator.publish_policy(comment="published again after the loss")
            await operator.release(await operator.acquire(N1, timeout=0))
