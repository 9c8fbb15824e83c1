"""A job's options, with fio's names, defaults and meanings.

:func:`job_options` turns the text options of one job (its ``[global]`` options merged with its
own, as fio merges them) into a frozen :class:`JobOptions`. An option fio has but tierstore does
not implement is an :class:`~tierstore.cli.bench.common.errors.UnsupportedOption`, never ignored.

Besides fio's options a job may name where it runs: ``tier`` (a configured tier, read and
written through the Tier object), ``config`` (the store configuration for ``tier`` and
``tier://`` files), ``endpoint_url`` and ``storage_options`` (JSON) for fsspec URLs.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..common.errors import BenchError, UnsupportedOption
from ..common.units import parse_bool, parse_int, parse_size, parse_size_range, parse_time

__all__ = ["BOOL_OPTIONS", "KNOWN_OPTIONS", "RW_MODES", "JobOptions", "canonical_name",
           "job_options"]

RW_MODES = {  # fio name -> (sequential, reads, writes)
    "read": (True, True, False), "write": (True, False, True),
    "randread": (False, True, False), "randwrite": (False, False, True),
    "randrw": (False, True, True), "rw": (True, True, True), "readwrite": (True, True, True),
}
IOENGINES = ("tierstore", "psync")
_ALIASES = {"readwrite": "rw", "blocksize": "bs", "blocksize_range": "bsrange",
            "endpoint-url": "endpoint_url", "storage-options": "storage_options",
            "wait_for_previous": "stonewall"}
BOOL_OPTIONS = frozenset({"time_based", "direct", "end_fsync", "group_reporting", "invalidate",
                          "randrepeat", "unlink", "fadvise_hint", "stonewall", "new_group"})
_STRING_OPTIONS = frozenset({"name", "rw", "filename", "directory", "ioengine", "description",
                             "random_distribution", "tier", "config", "endpoint_url",
                             "storage_options"})
_NUMBER_OPTIONS = frozenset({"bs", "bsrange", "size", "nrfiles", "iodepth", "numjobs",
                             "runtime", "ramp_time", "rwmixread", "rwmixwrite", "fsync",
                             "randseed"})
KNOWN_OPTIONS = BOOL_OPTIONS | _STRING_OPTIONS | _NUMBER_OPTIONS


def canonical_name(name: str) -> str:
    """fio's spelling of an option (``blocksize`` -> ``bs``); unknown names unchanged."""
    return _ALIASES.get(name, name)


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """One fio job, validated. Sizes are bytes, times seconds."""

    name: str
    rw: str = "read"
    rwmixread: int = 50
    bs: int = 4096
    bsrange: tuple[int, int] | None = None
    size: int | None = None
    nrfiles: int = 1
    filename: str | None = None
    directory: str | None = None
    iodepth: int = 1
    numjobs: int = 1
    runtime: float | None = None
    time_based: bool = False
    ramp_time: float = 0.0
    direct: bool = False
    invalidate: bool = True
    fadvise_hint: bool = True
    random_distribution: str = "random"
    zipf_theta: float | None = None
    fsync: int = 0
    end_fsync: bool = False
    group_reporting: bool = False
    stonewall: bool = False  # wait for every earlier job to finish; starts a new group
    new_group: bool = False  # start a new reporting group (jobs still run together)
    ioengine: str = "tierstore"
    randseed: int | None = None
    randrepeat: bool = True
    unlink: bool = False
    description: str = ""
    tier: str | None = None
    config: str | None = None
    endpoint_url: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    given: Mapping[str, str] = field(default_factory=dict)  # as written, for "job options"

    def __post_init__(self) -> None:
        where = f"job {self.name!r}"
        if self.rw not in RW_MODES:
            raise BenchError(f"{where}: rw={self.rw!r}: expected one of {', '.join(RW_MODES)}")
        if self.time_based and not self.runtime:
            raise BenchError(f"{where}: time_based needs a runtime")
        if self.ioengine not in IOENGINES:
            raise UnsupportedOption(f"ioengine={self.ioengine}", f"{where}; supported: "
                                    f"{', '.join(IOENGINES)}")
        if self.ioengine == "psync" and self.iodepth > 1:
            raise BenchError(f"{where}: ioengine=psync has one I/O in flight; use "
                             "ioengine=tierstore (the default) for iodepth > 1")
        if self.direct and min(self.block_sizes) % 512:
            raise BenchError(f"{where}: direct=1 needs block sizes that are multiples of 512")
        if self.tier and (self.filename or "").startswith("tier://"):
            raise BenchError(f"{where}: give either tier= or a tier:// filename, not both")

    @property
    def sequential(self) -> bool:
        return RW_MODES[self.rw][0]

    @property
    def reads(self) -> bool:
        return RW_MODES[self.rw][1]

    @property
    def writes(self) -> bool:
        return RW_MODES[self.rw][2]

    @property
    def read_percent(self) -> int:
        """Share of reads: 100 for reads only, 0 for writes only, else ``rwmixread``."""
        if not self.writes:
            return 100
        return 0 if not self.reads else self.rwmixread

    @property
    def block_sizes(self) -> tuple[int, int]:
        return self.bsrange or (self.bs, self.bs)

    @property
    def seed(self) -> int:
        """fio's ``randrepeat=1`` (the default) repeats the same random sequence each run."""
        if self.randseed is not None:
            return self.randseed
        return 0x7E1E5 if self.randrepeat else int.from_bytes(os.urandom(8))


def _distribution(text: str, option: str) -> dict[str, Any]:
    kind, _, theta = text.partition(":")
    if kind == "random" and not theta:
        return {"random_distribution": "random"}
    if kind == "zipf":
        try:
            value = float(theta)
        except ValueError:
            raise BenchError(f"{option}={text!r}: expected zipf:THETA, e.g. zipf:1.2") from None
        if not (value > 0 and math.isfinite(value)):
            raise BenchError(f"{option}={text!r}: THETA must be positive")
        return {"random_distribution": "zipf", "zipf_theta": value}
    raise UnsupportedOption(f"random_distribution={text}", "supported: random, zipf:THETA")


def _storage_options(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise BenchError(f"{option}: expected a JSON object of fsspec storage options") from None
    if not isinstance(value, dict):
        raise BenchError(f"{option}: expected a JSON object of fsspec storage options")
    return {"storage_options": value}


def _positive(name: str) -> Callable[[str, str], dict[str, Any]]:
    return lambda text, option: {name: parse_int(text, option, low=1)}


_PARSERS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "name": lambda text, _: {"name": text},
    "rw": lambda text, _: {"rw": text},
    "rwmixread": lambda text, o: {"rwmixread": parse_int(text, o, high=100)},
    "rwmixwrite": lambda text, o: {"rwmixread": 100 - parse_int(text, o, high=100)},
    "bs": lambda text, o: {"bs": _block(text, o)},
    "bsrange": lambda text, o: {"bsrange": parse_size_range(text, o)},
    "size": lambda text, o: {"size": parse_size(text, o)},
    "nrfiles": _positive("nrfiles"),
    "iodepth": _positive("iodepth"),
    "numjobs": _positive("numjobs"),
    "runtime": lambda text, o: {"runtime": parse_time(text, o)},
    "ramp_time": lambda text, o: {"ramp_time": parse_time(text, o)},
    "fsync": lambda text, o: {"fsync": parse_int(text, o)},
    "randseed": lambda text, o: {"randseed": parse_int(text, o)},
    "random_distribution": _distribution,
    "storage_options": _storage_options,
}


def _block(text: str, option: str) -> int:
    if "," in text or ":" in text:
        raise UnsupportedOption(f"{option}={text}", "separate read,write block sizes")
    value = parse_size(text, option)
    if value < 1:
        raise BenchError(f"{option}={text!r}: expected a positive block size")
    return value


def _parse_one(name: str, text: str) -> dict[str, Any]:
    if name in BOOL_OPTIONS:
        return {name: parse_bool(text, name)}
    if name in _PARSERS:
        return _PARSERS[name](text, name)
    return {name: text}


def job_options(name: str, raw: Mapping[str, str], given: Mapping[str, str] | None = None
                ) -> JobOptions:
    """A job from its text options (global ones merged in); ``given`` is what the job file
    or command line wrote for this job itself (echoed in the JSON's ``job options``)."""
    values: dict[str, Any] = {}
    for option, text in raw.items():
        canonical = canonical_name(option)
        if canonical not in KNOWN_OPTIONS:
            raise UnsupportedOption(option, f"job {name!r}")
        if canonical != "name":
            values.update(_parse_one(canonical, text))
    return JobOptions(name=name, **values, given=dict(given if given is not None else raw))
