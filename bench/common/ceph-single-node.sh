#!/usr/bin/env bash
# Single-node Ceph 16.2 (Debian bookworm packages) with an S3 gateway (radosgw, beast) on 127.0.0.1.
# 1 mon, 1 mgr, 1 osd (memstore in RAM by default, or bluestore on a file), 1 radosgw; no systemd,
# no cephadm, nothing in /etc/ceph touched. Adapted from /work/shared/tools/ceph-single-node.sh;
# tierstore.cli.bench.common.ceph.start_ceph() (the tests' fixture and `bench loader --s3 ceph`) runs it
# with free ports and a random secret.
#
#   apt-get install -y --no-install-recommends ceph-mon ceph-mgr ceph-osd radosgw ceph-common
#   CEPH_DIR=/tmp/c RGW_PORT=7480 bash bench/common/ceph-single-node.sh start
#   CEPH_DIR=/tmp/c bash bench/common/ceph-single-node.sh stop    # kills the pids in $CEPH_DIR/run
#   CEPH_DIR=/tmp/c bash bench/common/ceph-single-node.sh purge   # stop + rm -rf $CEPH_DIR
#
# Parameters (environment): CEPH_DIR, STORE (memstore|bluestore), MEMSTORE_BYTES (default 2 GiB),
# MON_PORT (msgr2, default 3300), MON_V1_PORT (legacy msgr1, default 6789), RGW_PORT (default 7480),
# AK / SK (S3 keys of the user "tierstore"). The mgr and osd pick their own ports in Ceph's
# ms_bind_port range (6800-7300) and move on to the next one if a port is taken.
# On success prints one line ("ceph ready ..."); on failure the tail of the relevant log, exit 1.
set -euo pipefail
CEPH_DIR=${CEPH_DIR:-${TMPDIR:-/tmp}/tierstore-ceph}
STORE=${STORE:-memstore}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-2147483648}
MON_PORT=${MON_PORT:-3300}
MON_V1_PORT=${MON_V1_PORT:-6789}
RGW_PORT=${RGW_PORT:-7480}
AK=${AK:-tierstore}
SK=${SK:-tierstore-secret}
CONF=$CEPH_DIR/ceph.conf
C=(-c "$CONF")
MON_ADDR="[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]"

T0=$EPOCHREALTIME
el() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
die() {  # die MESSAGE [LOG...]: the message, then the tail of each log that exists
  echo "ceph-single-node: $1" >&2
  shift
  for f in "$@"; do
    if [ -e "$f" ]; then echo "--- $f" >&2; tail -n 25 "$f" >&2; fi
  done
  exit 1
}

stop() {
  local f pid
  for f in "$CEPH_DIR"/run/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 20); do
    local alive=0
    for f in "$CEPH_DIR"/run/*.pid; do
      [ -e "$f" ] || continue
      if kill -0 "$(cat "$f")" 2>/dev/null; then alive=1; fi
    done
    if [ "$alive" = 0 ]; then break; fi
    sleep 0.25
  done
  for f in "$CEPH_DIR"/run/*.pid; do
    [ -e "$f" ] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true; rm -f "$f"
  done
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  purge) stop; rm -rf "$CEPH_DIR"; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|purge" >&2; exit 2 ;;
esac

for b in ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
  command -v "$b" >/dev/null || die "$b not found on PATH"
done

rm -rf "$CEPH_DIR"; mkdir -p "$CEPH_DIR"/{run,log,mon/a,mgr/x,osd/0,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon_host = $MON_ADDR
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
# cephx must stay on: with "none", radosgw 16.2 never authenticates (get_initial_auth_request -13)
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
# a throwaway one-node cluster: commit map changes at once, not batched per second (start-up
# and first bucket or pool creation are bound by this)
paxos_propose_interval = 0.05
run_dir = $CEPH_DIR/run
pid_file = $CEPH_DIR/run/\$name.pid
admin_socket = $CEPH_DIR/run/\$name.asok
log_file = $CEPH_DIR/log/\$name.log
keyring = $CEPH_DIR/keyring
osd_memory_target = 1073741824
ms_async_op_threads = 2
[mon]
mon_data = $CEPH_DIR/mon/\$id
mon_cluster_log_file = $CEPH_DIR/log/cluster.log
# the monitor refuses to start when its disk has under 5% free (it did, in CI); this cluster's
# monitor stores a few MiB and is thrown away: start unless the disk is full
mon_data_avail_crit = 0
mon_data_avail_warn = 1
[mgr]
mgr_data = $CEPH_DIR/mgr/\$id
mgr_initial_modules =
[osd]
osd_data = $CEPH_DIR/osd/\$id
osd_objectstore = $STORE
memstore_device_bytes = $MEMSTORE_BYTES
bluestore_block_path = $CEPH_DIR/osd/\$id.block
bluestore_block_size = 21474836480
bluestore_block_create = true
bluestore_block_db_create = false
bluestore_block_wal_create = false
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
[client.rgw.a]
# tcp_nodelay: without it every GET with a body waits ~40 ms (Nagle vs. delayed ACK)
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw_data = $CEPH_DIR/rgw
rgw_dns_name = 127.0.0.1
rgw_thread_pool_size = 64
# a deleted object's tail (all but its first 4 MiB) goes to RGW's garbage collector, which
# frees it no sooner than rgw_gc_obj_min_wait (2 h by default): a run that writes and deletes
# more than the in-memory OSD holds (bench migrate's passes) filled it, and a full OSD makes
# RGW hold every write. Freed within seconds here, as a deleted object's bytes are elsewhere.
rgw_gc_obj_min_wait = 0
rgw_gc_processor_period = 5
CONF

# one keyring holding every entity's key + caps; mon --mkfs imports it into its auth database
K=$CEPH_DIR/keyring
{
  ceph-authtool --create-keyring "$K" --gen-key -n mon. --cap mon 'allow *'
  ceph-authtool "$K" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' --cap mds 'allow *'
  ceph-authtool "$K" --gen-key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' \
    --cap mds 'allow *'
  ceph-authtool "$K" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' \
    --cap osd 'allow *'
  ceph-authtool "$K" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' \
    --cap mgr 'allow rw'
  monmaptool --create --addv a "$MON_ADDR" --fsid "$FSID" "$CEPH_DIR/monmap"
} > "$CEPH_DIR/log/setup.out" 2>&1 || die "keyring/monmap setup failed" "$CEPH_DIR/log/setup.out"

# monitor (daemonizes, writes run/mon.a.pid)
ceph-mon "${C[@]}" --mkfs -i a --monmap "$CEPH_DIR/monmap" --keyring "$K" \
  >> "$CEPH_DIR/log/setup.out" 2>&1 || die "ceph-mon --mkfs failed" "$CEPH_DIR/log/setup.out"
ceph-mon "${C[@]}" -i a >> "$CEPH_DIR/log/setup.out" 2>&1 \
  || die "ceph-mon failed" "$CEPH_DIR/log/setup.out" "$CEPH_DIR/log/mon.a.log"
timeout 60 ceph "${C[@]}" -s > /dev/null 2>> "$CEPH_DIR/log/setup.out" \
  || die "no monitor quorum on 127.0.0.1:$MON_PORT" "$CEPH_DIR/log/mon.a.log"
T_MON=$(el)

# manager
ceph-mgr "${C[@]}" -i x >> "$CEPH_DIR/log/setup.out" 2>&1 \
  || die "ceph-mgr failed" "$CEPH_DIR/log/setup.out" "$CEPH_DIR/log/mgr.x.log"

# osd
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
ID=$(ceph "${C[@]}" osd new "$OSD_UUID" 2>> "$CEPH_DIR/log/setup.out")
ceph-osd "${C[@]}" -i "$ID" --mkfs --osd-uuid "$OSD_UUID" >> "$CEPH_DIR/log/setup.out" 2>&1 \
  || die "ceph-osd --mkfs failed" "$CEPH_DIR/log/osd.$ID.log"
ceph-osd "${C[@]}" -i "$ID" >> "$CEPH_DIR/log/setup.out" 2>&1 \
  || die "ceph-osd failed" "$CEPH_DIR/log/setup.out" "$CEPH_DIR/log/osd.$ID.log"
for i in $(seq 1 120); do
  if ceph "${C[@]}" osd dump 2>/dev/null | grep -q "^osd.$ID up"; then break; fi
  if [ "$i" = 120 ]; then die "osd.$ID did not come up" "$CEPH_DIR/log/osd.$ID.log"; fi
  sleep 0.5
done
T_OSD=$(el)

# radosgw (creates its pools on first start); -f keeps it attached, so run it in the background
radosgw "${C[@]}" -n client.rgw.a -f >> "$CEPH_DIR/log/rgw.stdout" 2>&1 < /dev/null &
echo $! > "$CEPH_DIR/run/client.rgw.a.pid"
for i in $(seq 1 240); do
  if (exec 3<> "/dev/tcp/127.0.0.1/$RGW_PORT") 2>/dev/null; then break; fi
  kill -0 "$(cat "$CEPH_DIR/run/client.rgw.a.pid")" 2>/dev/null \
    || die "radosgw died" "$CEPH_DIR/log/client.rgw.a.log"
  if [ "$i" = 240 ]; then
    die "radosgw not listening on 127.0.0.1:$RGW_PORT" "$CEPH_DIR/log/client.rgw.a.log"
  fi
  sleep 0.5
done
radosgw-admin "${C[@]}" user create --uid=tierstore --display-name=tierstore \
  --access-key="$AK" --secret-key="$SK" > /dev/null 2>> "$CEPH_DIR/log/setup.out" \
  || die "radosgw-admin user create failed" "$CEPH_DIR/log/setup.out"
echo "ceph ready: s3 http://127.0.0.1:$RGW_PORT, mon 127.0.0.1:$MON_PORT (mon ${T_MON}s, osd ${T_OSD}s, total $(el)s, $STORE)"
