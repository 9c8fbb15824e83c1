"""A packet-level delay "wire" between the root network namespace and another one, on two TUN
devices: the benchmarks' and tests' stand-in for ``tc qdisc ... netem delay``, which this
kernel lacks (CONFIG_NET_SCH_NETEM is not set). This is a SIMULATION of network distance
only: the packets, the TCP connections and the servers at either end are real.

Root ns: device A (addr_a, peer addr_b)  <-- this process copies IP packets -->  device B in NS.
Every packet is held for rtt/2 in each direction, so ping and TCP see the added round-trip time
and TCP's own dynamics (slow start, windows) are kept, unlike a proxy. Based on the reference
``shared/tools/tun-wire.py``; this version is the project's own and adds:

- a control channel on stdin: a line ``rtt <ms>`` changes the delay of packets from then on
  (a site that slows down mid-test); a line ``stats`` prints the packet counts;
- it exits when stdin closes, so a test process that dies (even by SIGKILL) takes its wires
  with it, and the devices vanish with the process.

Usage (root; the namespace must exist)::

    python tunwire.py --ns site-b --rtt-ms 40 --a tw-h --b tw-s --addr-a 10.77.1.1 \\
        --addr-b 10.77.1.2

It configures both devices, prints ``READY ...`` and runs until SIGTERM, SIGINT or stdin EOF.
Nothing here imports tierstore.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


class Delay:
    """The one-way delay in seconds, changeable while packets flow."""

    def __init__(self, rtt_ms: float):
        self.one_way = rtt_ms / 2000.0


def _pipe(fd_in: int, fd_out: int, delay: Delay, mtu: int, stats: dict[str, int],
          key: str) -> None:
    q: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def reader() -> None:
        rd, put, now = os.read, q.put, time.monotonic
        n = 0
        while True:
            try:
                packet = rd(fd_in, mtu + 64)
            except OSError:
                break
            put((now() + delay.one_way, packet))
            n += 1
            stats[key] = n

    def writer() -> None:
        get, wr, now, sleep = q.get, os.write, time.monotonic, time.sleep
        while True:
            due, packet = get()
            wait = due - now()
            if wait > 0:
                sleep(wait)
            with contextlib.suppress(OSError):
                wr(fd_out, packet)

    for fn in (reader, writer):
        threading.Thread(target=fn, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", required=True)
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--mtu", type=int, default=9000)
    ap.add_argument("--a", default="tw-h", help="device name in the root namespace")
    ap.add_argument("--b", default="tw-s", help="device name in the site's namespace")
    ap.add_argument("--addr-a", default="10.77.1.1")
    ap.add_argument("--addr-b", default="10.77.1.2")
    args = ap.parse_args(argv)
    delay = Delay(args.rtt_ms)

    root = os.open("/proc/self/ns/net", os.O_RDONLY)
    nsfd = os.open(f"/var/run/netns/{args.ns}", os.O_RDONLY)
    fa = _open_tun(args.a)
    _setns(nsfd)
    fb = _open_tun(args.b)
    _setns(root)
    _sh("ip", "link", "set", args.a, "mtu", str(args.mtu), "up")
    _sh("ip", "addr", "add", args.addr_a, "peer", args.addr_b, "dev", args.a)
    ns = ("ip", "netns", "exec", args.ns)
    _sh(*ns, "ip", "link", "set", "lo", "up")
    _sh(*ns, "ip", "link", "set", args.b, "mtu", str(args.mtu), "up")
    _sh(*ns, "ip", "addr", "add", args.addr_b, "peer", args.addr_a, "dev", args.b)

    stats: dict[str, int] = {}
    _pipe(fa, fb, delay, args.mtu, stats, "a2b")
    _pipe(fb, fa, delay, args.mtu, stats, "b2a")
    stop = threading.Event()

    def control() -> None:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["rtt"] and len(words) == 2:
                delay.one_way = float(words[1]) / 2000.0
                print(f"RTT {words[1]}", flush=True)
            elif words[:1] == ["stats"]:
                print("packets", stats, flush=True)
        stop.set()  # stdin closed: whoever started this wire is gone

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=control, daemon=True).start()
    print(f"READY {args.a}({args.addr_a}) <-> {args.ns}:{args.b}({args.addr_b}) "
          f"added RTT {args.rtt_ms} ms mtu {args.mtu}", flush=True)
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
