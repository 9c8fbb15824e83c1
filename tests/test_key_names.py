"""A key is one object's name everywhere: no backend reads part of a valid key as a version,
a query, a fragment, a wildcard or a URL chain, so two keys never name one object.

The tier conformance suite (test_tiers.py) writes near-miss keys to every kind of tier; this
file holds why each refused character is refused, the property that every valid key reaches
each backend whole, and what the store does with keys it refuses.
"""

from __future__ import annotations

import re
from glob import has_magic
from urllib.parse import urlsplit

import pytest
import s3fs
from fsspec.core import _un_chain
from fsspec.utils import infer_storage_options
from hypothesis import given, settings
from hypothesis import strategies as st

from tierstore import InvalidKey, SyncStore, TierClass, TierConfig
from tierstore.fs import TierFileSystem
from tierstore.keys import SPECIAL, validate_key
from tierstore.tier import Tier

S3 = s3fs.S3FileSystem(anon=True, skip_instance_cache=True)
S3_VERSIONED = s3fs.S3FileSystem(anon=True, version_aware=True, skip_instance_cache=True)


def _refused_for(special: str) -> str:
    """What an InvalidKey says of a key refused for ``special``."""
    return re.escape(f"contains {special!r}")


# -- why each character is refused: a backend reads it as something other than a name -------


def test_each_refused_character_is_misread_by_a_backend(local_store: SyncStore) -> None:
    misread = {
        # s3fs asks S3 for "root/d/x" (and, version-aware, for its version "1")
        "?": S3.split_path("bucket/root/d/x?versionId=1")[1] == "root/d/x",
        # adlfs parses a path as a URL: an empty fragment (and any query) is gone
        "#": infer_storage_options("abfs://c/root/d/x#")["path"] == "/root/d/x"
        and urlsplit("gs://bucket/root/d/x#1").fragment == "1",  # gcsfs: generation 1
        "*": has_magic("d/x*"),
        "[": has_magic("d/x[1]"),
        # tier://d/a::b is the local file b, reached through tier://d/a
        "::": [protocol for _, protocol, _ in _un_chain("tier://d/a::b", {})] == ["tier", "file"],
    }
    assert misread == dict.fromkeys(SPECIAL, True)
    # and a wildcard path through tier:// names other keys: rm of "d/a[1]" removes d/a1
    local_store.put("d/a1", b"another key's bytes")
    assert TierFileSystem(store=local_store).expand_path("tier://d/a[1]") == ["d/a1"]


# -- every valid key reaches every backend whole --------------------------------------------

SEGMENT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/")
                  | st.sampled_from(list("?#*[]:%+=& .~")), min_size=1, max_size=12)
KEYS = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)
LOCAL = Tier(TierConfig(name="t", tier_class=TierClass.HOT, url="file:///srv/tier"))


@settings(max_examples=400, deadline=None)
@given(key=KEYS)
def test_every_valid_key_reaches_each_backend_whole(key: str) -> None:
    try:
        validate_key(key)
    except InvalidKey:
        return  # refused everywhere; test_each_refused_character... says why
    assert LOCAL.full_path(key) == f"/srv/tier/{key}"
    assert S3.split_path(f"bucket/root/{key}") == ("bucket", f"root/{key}", None)
    assert S3_VERSIONED.split_path(f"bucket/root/{key}") == ("bucket", f"root/{key}", None)
    parsed = urlsplit(f"gs://bucket/root/{key}")  # as gcsfs reads a version-aware path
    assert (parsed.path, parsed.query, parsed.fragment) == (f"/root/{key}", "", "")
    assert infer_storage_options(f"abfs://c/root/{key}") == {  # as adlfs reads any path
        "protocol": "abfs", "path": f"/root/{key}", "host": "c"}
    assert not has_magic(key)
    assert _un_chain(f"tier://{key}", {}) == [(key, "tier", {})]
    assert TierFileSystem._strip_protocol(f"tier://{key}") == key


# -- the store ------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "special"), [
    ("d/x?versionId=1", "?"), ("d/x#1", "#"), ("d/x*", "*"), ("d/x[1]", "["), ("d/x::y", "::")])
def test_the_store_and_tier_paths_refuse_each_character(local_store: SyncStore, key: str,
                                                         special: str) -> None:
    fs = TierFileSystem(store=local_store)
    for call in (lambda: local_store.put(key, b"data"), lambda: local_store.cat(key),
                 lambda: local_store.exists(key), lambda: local_store.rm(key),
                 lambda: local_store.move(key, "hot"),
                 lambda: fs.pipe_file(f"tier://{key}", b"data"),
                 lambda: fs.open(f"tier://{key}", "wb")):
        with pytest.raises(InvalidKey, match=_refused_for(special)):
            call()
    assert local_store.find() == []
    assert local_store.audit().ok


def test_a_stored_key_a_backend_aliased_fails_clearly(store: SyncStore) -> None:
    """A catalog from before these keys were refused may hold one: reading or removing it
    fails with InvalidKey, and never reaches the object of the key it aliased (on S3,
    d/x?versionId=1 was d/x: a read gave d/x's bytes, a removal deleted them)."""
    store.put("d/x", b"plain")
    bad = "d/x?versionId=1"
    store.aio.catalog.add_objects([(bad, 5, store.stat("d/x").checksum)], "warm",
                                  owner=store.aio.owner)
    fs = TierFileSystem(store=store)
    for call in (lambda: store.cat(bad), lambda: store.rm(bad), lambda: store.move(bad, "hot"),
                 lambda: fs.cat_file(f"tier://{bad}")):
        with pytest.raises(InvalidKey, match=_refused_for("?")):
            call()
    assert store.cat("d/x") == b"plain"
    assert fs.cat_file("tier://d/x") == b"plain"
