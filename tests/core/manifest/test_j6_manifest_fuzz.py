"""J6: the manifest loader and validator under mutated and random files.

Complements the I1 structural fuzz (test_manifest_fuzz.py) with byte-level
mutations of real-shaped manifests and hostile YAML/JSON seeds (alias bombs,
deep nesting, tags, duplicate keys, huge numbers, other encodings): every
input loads to a PluginManifest or is MANIFEST_INVALID, and validates or is
MANIFEST_INVALID, within 1 s and a bounded allocation. The corpus in
tests/fuzz_corpus/manifest is replayed on every run."""

from __future__ import annotations

import pytest
from hypothesis import given

from support.fuzz import bounded, corpus, fuzz_settings, inputs, tracing
from vivified.core.errors import InvalidArgument
from vivified.core.manifest import load_manifest_bytes, manifest_sha256, validate_manifest
from vivified.core.traits import TraitCatalogue
from vivified.manifest.v1.manifest_pb2 import PluginManifest

# Each input has a wall-clock bound: run alone, after the parallel pass (tools/test.sh).
pytestmark = pytest.mark.serial

CATALOGUE = TraitCatalogue.load_default()
# the loader caps a manifest at 64 KiB and YAML at a node count, so no input costs much
MAX_PEAK = 16 * 1024 * 1024


def _load_and_validate(document: bytes) -> str:
    try:
        manifest = load_manifest_bytes(document)
    except InvalidArgument as err:
        assert (err.reason, err.domain) == ("MANIFEST_INVALID", "vivified.registry"), err
        return "load_refused"
    assert isinstance(manifest, PluginManifest)
    assert manifest_sha256(PluginManifest.FromString(manifest.SerializeToString())) == manifest_sha256(manifest)
    try:
        validate_manifest(manifest, CATALOGUE)
    except InvalidArgument as err:
        assert (err.reason, err.domain) == ("MANIFEST_INVALID", "vivified.registry"), err
        return "invalid"
    return "valid"


def _check(document: bytes) -> str:
    return bounded(lambda: _load_and_validate(document), max_bytes=MAX_PEAK)


@pytest.mark.parametrize(("name", "data"), corpus("manifest"), ids=lambda v: v if isinstance(v, str) else "")
def test_j6_manifest_corpus_replays(name: str, data: bytes) -> None:
    with tracing():
        outcome = _check(data)
    if name in ("valid.json", "example_echo.yaml"):
        assert outcome == "valid"
    if name in (
        "valid-psl-wildcard.json",
        "billion-laughs.yaml",
        "python-tag.yaml",
        "duplicate-keys.json",
        "duplicate-keys.yaml",
        "deep-nesting.json",
        "huge-int.json",
        "nan.json",
    ):
        assert outcome != "valid", name


@fuzz_settings(max_examples=200)
@given(inputs("manifest", random_size=1024))
def test_j6_manifest_loader_fuzz(document: bytes) -> None:
    with tracing():
        _check(document)
