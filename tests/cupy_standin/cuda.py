"""``cupy.cuda`` of the stand-in: one pretend device, with only what lpfa asks of it."""

from __future__ import annotations

import os
import types

__all__ = ["Device", "runtime"]


def _device_count() -> int:
    return 1


runtime = types.SimpleNamespace(getDeviceCount=_device_count)
"""``cupy.cuda.runtime`` with ``getDeviceCount`` (one device)."""


class Device:
    """``cupy.cuda.Device``: the stand-in's one device, whose memory is the host's."""

    def __init__(self, device: int = 0):
        self.id = device

    @property
    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes, as ``cupy.cuda.Device.mem_info``: the host's physical memory."""
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page

    def synchronize(self) -> None:
        """Wait for the device (counted as a sync)."""
        from tests.cupy_standin._core import counter

        counter.sync("Device.synchronize")
