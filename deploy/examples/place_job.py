"""Place a training job where its dataset already is.

``tierstore locate PREFIX --json`` says, per site, whether it holds every object under the
prefix and how many bytes it misses. In the Kubernetes deployment here each node's hot tier
is site ``<node>`` (``deploy/k8s``), so a site is a node, named by its
``kubernetes.io/hostname`` label. This prints the pod affinity that sends the job there: a
requirement to run on a node that holds it all, where one does; else a preference for the
nodes that miss the fewest bytes (weights 1-100). Merge it into the Job's
``spec.template.spec.affinity``::

    tierstore locate datasets/imagenet/ --json | python place_job.py > affinity.json

A carbon-aware scheduler places the job where its data and the clean power are; tierstore's
part is the first (and, ahead of a job placed elsewhere, ``tierstore preload``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def affinity(holdings: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """The nodeAffinity for ``holdings`` (``tierstore locate --json``)."""
    complete = sorted(h["site"] for h in holdings if h["complete"])
    if complete:
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": label, "operator": "In", "values": complete}]}]}}}
    total = max((h["bytes"] + h["missing_bytes"] for h in holdings), default=0)
    held = sorted((h for h in holdings if h["bytes"]), key=lambda h: -h["bytes"])
    return {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": max(1, round(100 * h["bytes"] / total)), "preference": {
            "matchExpressions": [{"key": label, "operator": "In", "values": [h["site"]]}]}}
        for h in held]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="kubernetes.io/hostname",
                        help="the node label whose value is a tierstore site")
    args = parser.parse_args(argv)
    json.dump(affinity(json.load(sys.stdin), args.label), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
