"""tierstore.policies: pure migration policies, each a function from a catalog snapshot to
the moves it wants, and the engine that composes them into one plan.

::

    from tierstore.policies import default_engine, snapshot_from_store

    plan = default_engine().plan(snapshot_from_store(store))
    for move in plan:
        print(move.key, move.src, "->", move.dst, move.reason)

Only :func:`snapshot_from_store` reads anything; every policy is tested on plain
:class:`Snapshot` data. :meth:`PolicyConfig.from_config` reads the config's ``[policies]``
section. :class:`Simulation` replays an access trace (:func:`read_trace`) against the policies
in virtual time, beside a plain LRU cache (``tierstore simulate``). Pre-loads scheduled with
``tierstore preload`` and the next uses loaders announce are kept in the catalog.
"""

from .base import Move, ObjectState, Plan, Policy, Refusal, Snapshot, TierState
from .config import DAY, HOUR, PolicyConfig, Scoring, parse_duration
from .engine import PRECEDENCE, PolicyEngine, default_engine
from .frequency import FrequencyPolicy
from .ledger import Ledger, apply_plan
from .nextuse import NextUsePolicy
from .pins import PinPolicy
from .placement import PlacementPolicy
from .preload import PreloadPolicy, PreloadRequest
from .recency import RecencyPolicy
from .simulate import Simulation
from .snapshot import snapshot_from_store
from .trace import Trace, TraceError, read_trace
from .watermarks import WatermarkPolicy

__all__ = [
    "DAY",
    "HOUR",
    "PRECEDENCE",
    "FrequencyPolicy",
    "Ledger",
    "Move",
    "NextUsePolicy",
    "ObjectState",
    "PinPolicy",
    "PlacementPolicy",
    "Plan",
    "Policy",
    "PolicyConfig",
    "PolicyEngine",
    "PreloadPolicy",
    "PreloadRequest",
    "RecencyPolicy",
    "Refusal",
    "Scoring",
    "Simulation",
    "Snapshot",
    "TierState",
    "Trace",
    "TraceError",
    "WatermarkPolicy",
    "apply_plan",
    "default_engine",
    "parse_duration",
    "read_trace",
    "snapshot_from_store",
]
