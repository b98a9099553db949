"""The one lifecycle every pool-owning object shares (cloudcreds._lifecycle)."""

from __future__ import annotations

import gc
import warnings

import pytest

from cloudcreds import CloudClient, CloudWorkspace, ConfigurationError
from cloudcreds._lifecycle import AsyncResource


class Pool(AsyncResource):
    """A stand-in resource: counts its releases, may be left open."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        if fail:
            raise ConfigurationError("bad argument")
        self.open = True
        self.releases = 0

    async def _release(self) -> None:
        self.releases += 1
        self.open = False

    def _owns_open_resources(self) -> bool:
        return self.open


async def test_async_with_closes_once() -> None:
    async with Pool() as pool:
        assert not pool.closed
        pool.check_open()
    assert pool.closed
    await pool.aclose()
    async with pool:  # re-entering a closed object and leaving it is harmless
        pass
    assert pool.releases == 1
    with pytest.raises(ConfigurationError, match="this Pool is closed; create a new one"):
        pool.check_open()


def test_unclosed_owner_warns_and_closed_one_does_not() -> None:
    holder = [Pool()]
    with pytest.warns(ResourceWarning, match="unclosed Pool"):
        holder.clear()  # the last reference: collected here
    quiet = Pool()
    quiet.open = False  # owns nothing open any more: nothing to warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del quiet
        gc.collect()


def test_half_built_object_does_not_warn_or_fail() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigurationError):
            Pool(fail=True)
        gc.collect()


@pytest.mark.parametrize("cls", [CloudWorkspace, CloudClient])
def test_public_classes_share_the_lifecycle(cls: type) -> None:
    assert issubclass(cls, AsyncResource)
    assert "aclose" not in vars(cls)
    assert "__del__" not in vars(cls)
