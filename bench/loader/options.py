"""The options of ``tierstore bench loader`` and its MLPerf Storage presets.

Kept free of heavy imports: every ``tierstore`` command builds the parser.

The presets are the MLPerf Storage training workloads as DLIO's H100 configurations describe
them (``configs/workload/*_h100.yaml`` of argonne-lcf/dlio_benchmark; see
``/work/shared/ANCHORS.md``): record size and its spread, batch size and the emulated
computation time per batch. ``--scale S`` multiplies the sample sizes and the computation time
by ``S``, so a scaled workload asks for the same bytes per second per accelerator as the
preset while fitting a small machine; the dataset's size is set apart (``--samples`` or
``--dataset-size``). Every figure can be overridden.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from tierstore.energy import ACCELERATOR_WATTS, DEFAULT_ACCELERATOR, DEFAULT_INTENSITY
from tierstore.errors import ConfigError
from tierstore.units import parse_size

__all__ = ["PRESETS", "Preset", "add_loader_arguments"]


@dataclass(frozen=True)
class Preset:
    """One MLPerf Storage workload, unscaled."""

    name: str
    sample_bytes: int  # mean record length
    sample_stdev: int  # its standard deviation (normal, clipped)
    batch_size: int
    compute_s: float  # emulated accelerator time per batch (H100)
    format: str  # how the benchmark stores it here
    source: str


PRESETS = {
    "unet3d": Preset("unet3d", 146_600_628, 68_341_808, 7, 0.323, "raw",
                     "DLIO unet3d_h100: npz files of one 140 MiB sample, batch 7, 0.323 s"),
    "resnet50": Preset("resnet50", 114_660, 136_076, 400, 0.224, "tar",
                       "MLPerf Storage resnet50 (H100): ~112 KiB records packed in files "
                       "(tfrecord; tar here), batch 400, 0.224 s"),
    "cosmoflow": Preset("cosmoflow", 2_828_486, 71_311, 1, 0.0035, "raw",
                        "DLIO cosmoflow_h100: 2.7 MiB records, one per file, batch 1, 3.5 ms"),
}


def _size(text: str) -> int:
    try:
        return parse_size(text, field="size")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0.05 or 0.05s), got {text!r}")
    return value


LOADERS = ("tierstore", "plain", "filecache")
PEERS = ("wds", "mosaic", "litdata")  # bench/peers: installed by the extra tierstore[peers]
BASELINES = ("plain", "filecache", *PEERS)


def _names(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of "
                                             f"{', '.join(allowed)}, got {text!r}")
        return list(dict.fromkeys(names))

    return parse


_loaders = _names(LOADERS)


def add_loader_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tierstore bench loader``."""
    p = parser
    work = p.add_argument_group("workload (a preset, scaled, and overrides)")
    work.add_argument("--preset", choices=sorted(PRESETS), default="resnet50",
                      help="MLPerf Storage workload: sample sizes, batch, compute time "
                           "(default: resnet50)")
    work.add_argument("--scale", type=_positive(float), default=1.0, metavar="S",
                      help="multiply the preset's sample sizes and compute time by S "
                           "(default: 1)")
    work.add_argument("--format", choices=("tar", "parquet", "raw"),
                      help="how samples are stored (default: the preset's)")
    size = work.add_mutually_exclusive_group()
    size.add_argument("--samples", type=_positive(int), metavar="N",
                      help="samples in the dataset")
    size.add_argument("--dataset-size", type=_size, metavar="SIZE", default=None,
                      help="bytes of samples in the dataset (default: 512MiB)")
    work.add_argument("--sample-size", type=_size, metavar="SIZE",
                      help="mean sample size (default: the preset's, scaled)")
    work.add_argument("--sample-stdev", type=_size, metavar="SIZE",
                      help="its standard deviation, normal and clipped (default: scaled "
                           "preset's; 0: fixed size)")
    work.add_argument("--shard-size", type=_size, metavar="SIZE",
                      help="tar/Parquet shard size (default: dataset/64, within 1-64 MiB)")
    work.add_argument("--batch-size", type=_positive(int), metavar="N",
                      help="samples per batch (default: the preset's)")
    work.add_argument("--compute", type=_seconds, metavar="SECONDS",
                      help="emulated accelerator time per batch (default: the preset's, "
                           "scaled)")
    work.add_argument("--epochs", type=_positive(int), default=3, metavar="N",
                      help="epochs per loader (default: 3)")
    work.add_argument("--seed", type=int, default=0, help="data and shuffle seed")
    run = p.add_argument_group("loaders")
    run.add_argument("--loaders", type=_loaders, default=list(LOADERS), metavar="LIST",
                     help="which loaders to run: tierstore,plain,filecache (default: all; "
                          "the baselines run first, while every shard is on the data tier)")
    run.add_argument("--baselines", type=_names(BASELINES), metavar="LIST",
                     help="the loaders tierstore is compared with, in place of those "
                          "--loaders names: plain,filecache (fsspec over the tierstore "
                          "dataset) and the peers wds (WebDataset), mosaic (MosaicML "
                          "Streaming), litdata (LitData), each writing the samples with its "
                          "own writer into the same bucket and reading them with its own "
                          "loader and shuffle (pip install 'tierstore[peers]'); a peer that "
                          "is missing, fails or hangs is recorded as such and the run goes "
                          "on")
    run.add_argument("--peer-timeout", type=_seconds, default=300.0, metavar="SECONDS",
                     help="a peer that hands over no batch for this long is recorded as hung "
                          "and left (default: 300)")
    run.add_argument("--workers", type=_positive(int), default=2, metavar="N",
                     help="DataLoader workers, the same for every loader (default: 2)")
    run.add_argument("--accelerators", type=_positive(int), default=1, metavar="N",
                     help="emulated accelerators on this node, as MLPerf Storage runs them: N "
                          "training processes (ranks of one job), each with its own loader "
                          "and --workers workers; the epoch's AU is the lowest rank's "
                          "(tierstore and the peers; default: 1)")
    run.add_argument("--accelerator", default=DEFAULT_ACCELERATOR,
                     choices=sorted(ACCELERATOR_WATTS), metavar="KIND",
                     help="the emulated accelerator, for the energy its waiting for data "
                          f"costs (estimates; {', '.join(sorted(ACCELERATOR_WATTS))}; "
                          f"default: {DEFAULT_ACCELERATOR})")
    run.add_argument("--accelerator-watts", type=_positive(float), metavar="WATTS",
                     help="its draw while waiting (default: its board power, an upper bound)")
    run.add_argument("--intensity", type=_positive(float), default=DEFAULT_INTENSITY,
                     metavar="G_PER_KWH", help="the grid's carbon intensity, gCO2e/kWh "
                     f"(default: {DEFAULT_INTENSITY:g}, the world's 2023 average)")
    run.add_argument("--find-max", action="store_true",
                     help="also find, for tierstore and each peer, the most accelerators this "
                          "node keeps at AU >= 90%% in every epoch (doubling, then bisecting; "
                          "each trial starts cold; needs --compute)")
    run.add_argument("--max-accelerators", type=_positive(int), default=16, metavar="N",
                     help="the most accelerators --find-max tries (default: 16)")
    run.add_argument("--prefetch-bytes", type=_size, metavar="SIZE",
                     help="tierstore's read-ahead budget (default: 1/16 of memory, "
                          "64 MiB-1 GiB)")
    where = p.add_argument_group("where the data lives")
    source = where.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="STORE.toml", default=argparse.SUPPRESS,
                        help="a store whose warm tier holds the dataset (a private catalog "
                             "and hot folder are made beside it)")
    source.add_argument("--s3", choices=("moto", "ceph"),
                        help="start a local S3 server for the data tier: moto (in a child "
                             "process) or ceph (the project's single-node Ceph radosgw, "
                             "memstore OSD; needs the Ceph packages: a real gateway, with "
                             "request counters)")
    where.add_argument("--tier", help="the tier of --config to put the dataset in (default: "
                                      "its first warm tier)")
    where.add_argument("--hot-fraction", type=_fraction, default=0.5, metavar="F",
                       help="hot tier capacity as a fraction of the dataset (default: 0.5); "
                            "the peers' local caches get the same bound (at 1: unbounded)")
    where.add_argument("--hot-dir", metavar="DIR",
                       help="the hot tier's folder (default: in the work folder)")
    where.add_argument("--workdir", metavar="DIR",
                       help="work folder: catalog, hot tier, caches, logs (default: a "
                            "temporary folder, removed after)")
    daemon = where.add_mutually_exclusive_group()
    daemon.add_argument("--daemon", dest="daemon", action="store_true", default=True,
                        help="run 'tierstore daemon --tick 1s' during tierstore's epochs "
                             "(default)")
    daemon.add_argument("--no-daemon", dest="daemon", action="store_false",
                        help="no daemon: nothing is staged into the hot tier")
    where.add_argument("--daemon-tick", default="1s", metavar="SECONDS",
                       help="the daemon's --tick (default: 1s)")
    out = p.add_argument_group("output")
    out.add_argument("--json", dest="json_file", metavar="FILE",
                     help="write the result document (JSON) to FILE ('-': stdout)")
    out.add_argument("--results", metavar="DIR",
                     help="results folder the document is also saved in (default: "
                          "$TIERSTORE_RESULTS or ./bench-results)")
    out.add_argument("--plot", metavar="FILE.png",
                     help="the plot (default: beside the saved document)")
    out.add_argument("--keep", action="store_true",
                     help="keep the work folder and the dataset after the run")
