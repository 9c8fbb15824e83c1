"""The loaders a user would pick instead of tierstore's, as baselines of ``tierstore bench
loader --baselines``: WebDataset (``wds``), MosaicML Streaming (``mosaic``) and LitData
(``litdata``), one small module each behind :class:`~.base.Peer`. Each writes the benchmark's
samples with its own writer into the data tier's bucket and reads them through its own
documented loader with its own shuffle.

They come with the optional extra ``tierstore[peers]``; nothing here imports them until a peer
runs, so this package imports without them.
"""

from __future__ import annotations

import importlib

from .base import INSTALL_HINT, Peer, PeerSite, SampleSource

__all__ = ["INSTALL_HINT", "PEERS", "Peer", "PeerSite", "SampleSource", "peer_class"]

PEERS = {"wds": "wds_peer:WebDatasetPeer", "mosaic": "mosaic_peer:MosaicPeer",
         "litdata": "litdata_peer:LitDataPeer"}


def peer_class(name: str) -> type[Peer]:
    """The peer ``--baselines`` calls ``name``."""
    module, _, cls = PEERS[name].partition(":")
    found: type[Peer] = getattr(importlib.import_module(f".{module}", __name__), cls)
    return found
