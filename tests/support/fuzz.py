"""J6 fuzzing helpers: regression corpora kept in the repository, byte
mutations of their seeds, and per-input time and memory bounds.

Every J6 target has a directory `tests/fuzz_corpus/<target>/`; each file is
one input (raw bytes). The tests replay every file on every run and also
use the files as seeds that hypothesis mutates. When the fuzzer finds an
input that breaks a target, add it there (see tests/fuzz_corpus/README.md).
"""

from __future__ import annotations

import pathlib
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

T = TypeVar("T")
CORPUS_ROOT = pathlib.Path(__file__).resolve().parent.parent / "fuzz_corpus"
# No input may take longer than this (J6: no hang).
PER_INPUT_SECONDS = 1.0


def corpus(target: str) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every seed of `target`, sorted by name."""
    directory = CORPUS_ROOT / target
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise AssertionError(f"no corpus for {target} in {directory}")
    return [(p.name, p.read_bytes()) for p in files]


def fuzz_settings(max_examples: int) -> settings:
    """A fixed budget: `max_examples` inputs, each within PER_INPUT_SECONDS;
    no example database, so a run depends on the code and the corpus only."""
    return settings(
        max_examples=max_examples,
        deadline=PER_INPUT_SECONDS * 1000,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


_INTERESTING = [
    b"\x00",
    b"\xff",
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b":",
    b" ",
    b"%",
    b"\x80",
    b"\xc3",
    b"9" * 20,
    b"\xff\xff\xff\xff\x0f",
    b"-1",
    b"0x",
    b"..",
    b"[",
    b"]",
    b"@",
    b"#",
    b"\\",
    b"*",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], max_size: int = 1 << 17) -> bytes:
    """One seed with up to eight random edits: bit flips, byte overwrites,
    inserted interesting tokens, deletions, duplicated ranges, truncation
    and splices with another seed."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "byte", "insert", "delete", "duplicate", "truncate", "splice"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(_INTERESTING) | st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 64)))
            data[at:at] = data[at:end] * draw(st.integers(1, 4))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            cut = draw(st.integers(0, len(other)))
            data = data[:at] + bytearray(other[cut:])
        if len(data) > max_size:
            del data[max_size:]
    return bytes(data)


def inputs(target: str, random_size: int = 2048) -> st.SearchStrategy[bytes]:
    """Mutated corpus seeds, and plain random bytes."""
    seeds = [data for _, data in corpus(target)]
    return mutated(seeds) | st.binary(max_size=random_size)


@contextmanager
def tracing() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def bounded(run: Callable[[], T], *, max_bytes: int, seconds: float = PER_INPUT_SECONDS) -> T:
    """Run one input: fail if it allocates more than `max_bytes` at its peak
    (inside `tracing()`) or takes longer than `seconds` of wall time."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - base
    assert peak <= max_bytes, f"one input allocated {peak} bytes at its peak (bound {max_bytes})"
    assert elapsed <= seconds, f"one input took {elapsed:.2f} s (bound {seconds} s)"
    return result
