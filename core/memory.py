"""The core process's allocator policy: large transient buffers go back to the OS.

Password hashing allocates Argon2id's whole memory cost (19 MiB by default) on a
worker thread and frees it ~0.1 s later. glibc raises its mmap threshold after
the first such free, so from then on those buffers come from the thread's own
arena and stay resident when freed: every hashing thread keeps m KiB of RSS for
the life of the process. Fixing the threshold (which also stops glibc adjusting
it) makes every allocation of at least that size an mmap of its own, unmapped
on free, so the core's resident memory follows what it actually holds.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
LARGE_ALLOCATION_BYTES = 1024 * 1024


def return_large_frees_to_os(threshold: int = LARGE_ALLOCATION_BYTES) -> bool:
    """Serve allocations of `threshold` bytes or more by mmap; False where not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
