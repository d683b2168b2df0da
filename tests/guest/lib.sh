# SPDX-License-Identifier: GPL-2.0-only
# lib.sh: shell functions for the real-guest tests. Source it from bash (set -euo pipefail ok).
#
#   source "$(dirname "$0")/lib.sh"
#   cl_init                         # daemons up, host checked ($CLOUDLET check), traps set,
#                                   # domain prefix cl-test-<pid>-
#   QDIR=$(cl_qdir "$OUTDIR")       # where QEMU may open files for this OUTDIR
#   TYPE=$(cl_accel KERNEL INITRD)  # "kvm" if a KVM guest really boots here, else "qemu" (TCG)
#   cl_vm_xml IN OUT NAME DISK MEM [share]   # copy of a domain XML for domain NAME with those files
#   cl_boot XML NAME [TIMEOUT]      # cold boot, wait for CLOUDLET-GUEST-READY and a shell
#   cl_console NAME TIMEOUT CMD     # run CMD in the guest, print its output, return its status
#   cl_snapshot NAME STATEFILE      # pause + migrate (x-ignore-shared) the device state to a file
#   cl_resume XML NAME STATEFILE    # start paused with -incoming defer, feed the state, resume
#   cl_synthesis NAME OUT ERR ARGS...   # `cloudlet synthesis ARGS` in the background, until resumed
#   cl_destroy NAME ; cl_cleanup [PREFIX]
#
# Layout and users: QEMU runs as $CL_QEMU_USER (libvirt-qemu), so every file it opens must be
# reachable by that user. cl_qdir returns OUTDIR itself when that user can traverse it, and
# otherwise /var/lib/cloudlet-test/<hash of OUTDIR> (make-workload.sh then symlinks
# OUTDIR/{guest,base,custom} there). Unix sockets (console, migration) live in
# /run/cloudlet-test/<domain>/ (short paths: sun_path is 108 bytes), mode 0777.
#
# Every wait is bounded; on failure functions print why and return non-zero (cl_die exits).

CL_GUEST_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CL_GUESTCTL="python3 $CL_GUEST_LIB_DIR/guestctl.py"
CL_VIRSH_URI=${CL_VIRSH_URI:-qemu:///system}
CL_RUN_ROOT=${CL_RUN_ROOT:-/run/cloudlet-test}
CL_STATE_ROOT=${CL_STATE_ROOT:-/var/lib/cloudlet-test}
CL_PREFIX=${CL_PREFIX:-cl-test-$$-}
CL_MEM_MIB=256
CL_READY_MARKER=CLOUDLET-GUEST-READY
CL_HELPER_PIDS=()
CL_EXIT_HOOKS=()
CL_QEMU_USER=""

cl_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
cl_die() { echo "ERROR: $*" >&2; exit 1; }
# shellcheck source=tests/lib/skip.sh
source "$CL_GUEST_LIB_DIR/../lib/skip.sh"
cl_skip() { cl_skip_test "$@"; }

cl_virsh() { timeout "${CL_VIRSH_TIMEOUT:-60}" virsh -q -c "$CL_VIRSH_URI" "$@"; }

# ---------------------------------------------------------------- setup
cl_have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep 'install ok installed' >/dev/null; }

# Install the host packages the guest tests need (only those missing); exit 77 if impossible.
cl_require_host() {
  local missing=() p
  for p in qemu-system-x86 libvirt-daemon-system libvirt-clients python3; do
    cl_have_pkg "$p" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || cl_skip "missing packages ${missing[*]} and not root"
    cl_log "installing ${missing[*]}"
    timeout 300 apt-get update -q >&2 || true
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
      "${missing[@]}" >&2 || cl_skip "cannot install ${missing[*]}"
  fi
  command -v qemu-system-x86_64 >/dev/null || cl_skip "no qemu-system-x86_64"
  command -v virsh >/dev/null || cl_skip "no virsh"
  command -v libvirtd >/dev/null || cl_skip "no libvirtd"
  [ "$(id -u)" = 0 ] || cl_skip "the guest tests need root (libvirt qemu:///system)"
}

# cl_daemon_alive NAME: a live (not zombie) process of that name exists.
cl_daemon_alive() { [ "$(ps -C "$1" -o stat= 2>/dev/null | grep -c -v '^Z' || true)" -gt 0 ]; }

# Start virtlogd and libvirtd unless running (no systemd here), wait until libvirt answers.
# (fd 9, the workload lock, is not passed on to the daemons.)
cl_start_daemons() {
  local i
  if ! cl_daemon_alive virtlogd || [ ! -S /run/libvirt/virtlogd-sock ]; then
    cl_log "starting virtlogd"
    virtlogd -d 9>&- || cl_die "virtlogd -d failed"
  fi
  if ! cl_daemon_alive libvirtd; then
    cl_log "starting libvirtd"
    libvirtd -d 9>&- || cl_die "libvirtd -d failed"
  fi
  for i in $(seq 1 60); do
    if [ -S /run/libvirt/virtlogd-sock ] && timeout 10 virsh -c "$CL_VIRSH_URI" version >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  cl_die "libvirt does not answer on $CL_VIRSH_URI (or no virtlogd socket) after 30 s"
}

cl_qemu_user() {
  if [ -z "$CL_QEMU_USER" ]; then
    local u
    u=$(sed -n 's/^[[:space:]]*user[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' /etc/libvirt/qemu.conf 2>/dev/null | tail -1)
    u=${u#+}
    [ -n "$u" ] || u=libvirt-qemu
    getent passwd "$u" >/dev/null || u=root
    CL_QEMU_USER=$(getent passwd "$u" | cut -d: -f1)
  fi
  echo "$CL_QEMU_USER"
}

# cl_reachable DIR: can the QEMU user traverse and read DIR?
cl_reachable() {
  local u
  u=$(cl_qemu_user)
  [ "$u" = root ] && return 0
  runuser -u "$u" -- test -x "$1" -a -r "$1" 2>/dev/null
}

# cl_qdir OUTDIR: print the directory where files QEMU opens for OUTDIR are kept.
cl_qdir() {
  local out
  mkdir -p "$1"
  out=$(cd "$1" && pwd -P)
  if [ -s "$out/qemu-dir" ]; then cat "$out/qemu-dir"; return 0; fi
  if cl_reachable "$out"; then echo "$out"; return 0; fi
  local h
  h=$(printf '%s' "$out" | md5sum | cut -c1-12)
  mkdir -p "$CL_STATE_ROOT/$h"
  chmod 0755 "$CL_STATE_ROOT" "$CL_STATE_ROOT/$h"
  echo "$out" >"$CL_STATE_ROOT/$h/owner"
  echo "$CL_STATE_ROOT/$h"
}

# cl_own_ram FILE...: make RAM files usable by QEMU (it opens them read-write).
cl_own_ram() {
  local u
  u=$(cl_qemu_user)
  chown "$u:$(id -gn "$u")" "$@"
  chmod 0660 "$@"
}

# cl_sockdir NAME: per-domain directory for unix sockets.
cl_sockdir() {
  local d=$CL_RUN_ROOT/$1
  mkdir -p "$d"
  chmod 0755 "$CL_RUN_ROOT"
  chmod 0777 "$d"
  echo "$d"
}

# ---------------------------------------------------------------- exit handling
# cl_use_workload DIR: W := the workload DIR that make-workload.sh made, as a physical path,
# held with a shared lock on fd 9 (a builder takes it exclusively) for the rest of the test.
cl_use_workload() {
  [ -f "$1/.done" ] ||
    cl_die "no workload in $1 (run tests/guest/make-workload.sh --cached $1 first)"
  W=$(cd "$1" && pwd -P)
  exec 9>"$W/.lock"
  flock -s -w 1200 9 || cl_die "$W/.lock is held by a builder for 20 min"
  cl_lock_current 9 "$W/.lock" && [ -f "$W/.done" ] ||
    cl_die "the workload in $W was removed while this test waited for it; run it again"
}

# cl_lock_current FD PATH: whether FD is still the file at PATH (an eviction may have moved
# the directory away while this process waited for its lock).
cl_lock_current() {
  [ "$(stat -L -c %d:%i "/proc/self/fd/$1")" = "$(stat -c %d:%i "$2" 2>/dev/null)" ]
}

# cl_remove_fixture DIR [NAME]: removes a fixture directory, once called NAME (default DIR),
# and the directory cl_qdir made for it under $CL_STATE_ROOT (when QEMU's user could not
# reach it), if that one names NAME its owner.
cl_remove_fixture() {
  local q
  q=$(cat "$1/qemu-dir" 2>/dev/null || true)
  if [ -n "$q" ] && [ "$q" != "${2:-$1}" ] && [ "${q#"$CL_STATE_ROOT"/}" != "$q" ] &&
    [ "$(cat "$q/owner" 2>/dev/null)" = "${2:-$1}" ]; then
    rm -rf -- "$q"
  fi
  rm -rf -- "$1"
}

# cl_evict_fixtures ROOT PREFIX [KEEP...]: of the cached fixtures ROOT/PREFIX-<key> besides
# the directories KEEP, keeps the two used last (the scripts that make and use them open
# their .lock for writing at each use) and removes every other one that nobody holds (a
# reader holds its .lock shared, a builder exclusively): moved aside under its lock, so that
# nobody finds it half removed. Without it the cache keeps one per version of the scripts.
cl_evict_fixtures() {
  local root=$1 prefix=$2 l d k gone n=0
  shift 2
  local locks=("$root/$prefix"-*/.lock)
  [ -e "${locks[0]}" ] || return 0
  while IFS= read -r l; do
    d=${l%/.lock}
    [ ! -L "$d" ] || continue
    for k in "$@"; do [ ! "$d" -ef "$k" ] || continue 2; done
    n=$((n + 1))
    [ $n -gt 2 ] || continue
    gone=$root/.evicted.$$.$n
    flock -n -x "$l" mv -T -- "$d" "$gone" || continue
    cl_remove_fixture "$gone" "$d"
    cl_log "removed the unused fixture $d"
  done < <(ls -1t -- "${locks[@]}")
}

# cl_workload_base: registers the workload's base ($W, see cl_use_workload)
# in $CLOUDLET_HOME with its device state and domain XML.
cl_workload_base() {
  "$CLOUDLET" -q base "$W/base/disk.img" --memory "$W/base/memory.img" \
    --state "$W/base/state" --domain "$W/base/domain.xml"
}
# cl_workload_overlay OUT [OPTION...]: the workload's customized VM as an
# overlay of its base, into directory OUT; prints the summary.
cl_workload_overlay() {
  local out=$1
  shift
  "$CLOUDLET" -q overlay "$W/base/disk.img" --disk "$W/custom/disk.img" \
    --memory "$W/custom/memory.img" --state "$W/custom/state" \
    --domain "$W/custom/domain.xml" -o "$out" "$@"
}

cl_at_exit() { CL_EXIT_HOOKS+=("$1"); }

# A test's checks: ok TEXT and bad TEXT print one line each (bad ones are
# counted); cl_checks_done ends the test: it dies when a check failed, else
# prints PASS.
CL_FAILS=0
ok() { echo "ok: $*"; }
bad() {
  echo "FAIL: $*" >&2
  CL_FAILS=$((CL_FAILS + 1))
}
cl_checks_done() {
  [ "$CL_FAILS" = 0 ] || cl_die "$CL_FAILS checks failed"
  echo "PASS"
}

# cl_state_dir VAR PREFIX: a scratch directory QEMU's user can reach (in
# $CL_STATE_ROOT), removed at exit, into VAR.
cl_state_dir() {
  local d
  mkdir -p "$CL_STATE_ROOT"
  d=$(mktemp -d "$CL_STATE_ROOT/$2.XXXXXX")
  chmod 0755 "$d"
  cl_at_exit "rm -rf '$d'"
  printf -v "$1" '%s' "$d"
}

# cl_stop_synthesis PID: Ctrl-C to a synthesis in the background; waits (at
# most 60 s) and returns its exit status.
cl_stop_synthesis() {
  local rc=0
  kill -INT "$1"
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && { echo "synthesis still runs 60 s after SIGINT" >&2; kill -KILL "$1"; }
  cl_wait_helper "$1" || rc=$?
  return $rc
}

# cl_wait_helper PID: wait for a background helper and forget it; returns its status.
cl_wait_helper() {
  local rc=0 p keep=()
  wait "$1" || rc=$?
  for p in "${CL_HELPER_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  CL_HELPER_PIDS=("${keep[@]}")
  return $rc
}

cl_on_exit() {
  local rc=$? h p
  set +e
  for ((i = ${#CL_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do eval "${CL_EXIT_HOOKS[$i]}"; done
  for p in "${CL_HELPER_PIDS[@]}"; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  cl_cleanup "$CL_PREFIX"
  rm -rf "${CL_RUN_ROOT:?}/$CL_PREFIX"*
  return $rc
}

# cl_reap_stale: destroy cl-test-<pid>-* domains (and socket dirs) whose process is gone
# (a test killed without running its EXIT trap).
cl_reap_stale() {
  local d pid
  for d in $({ cl_virsh list --all --name 2>/dev/null; ls "$CL_RUN_ROOT" 2>/dev/null; } | sort -u); do
    case "$d" in cl-test-[0-9]*-*) ;; *) continue ;; esac
    pid=${d#cl-test-}
    pid=${pid%%-*}
    if [ "$pid" != "$$" ] && ! kill -0 "$pid" 2>/dev/null; then
      cl_log "removing stale $d"
      cl_destroy "$d"
    fi
  done
}

# cl_check_host: libvirt must start a domain within seconds here, or every early-start figure
# measures the host, not cloudlet (libvirt 9.0 re-probes QEMU at every start where QEMU's user
# cannot use /dev/kvm: 30-50 s). `cloudlet check` times a paused domain and names the cause.
cl_check_host() {
  "${CLOUDLET:?CLOUDLET (the cloudlet program) not set: it checks the host first}" check >&2 ||
    cl_die "libvirt does not start a domain quickly here (above): the VM tests would measure the host, not cloudlet; fix the cause that cloudlet check names (tests/install-deps.sh makes the /dev/kvm fix)"
}

# cl_init: common start of every guest test.
cl_init() {
  cl_require_host
  cl_start_daemons
  cl_check_host
  trap cl_on_exit EXIT
  trap 'exit 130' INT TERM
  cl_reap_stale
  cl_memory_mode_setup
}

# Postcopy memory (CLOUDLET_MEMORY_MODE=postcopy, set by tests/CMakeLists.txt)
# needs userfaultfd for QEMU's user: on for this test, the host's value back
# at its exit (`cloudlet check --fix` is what makes it permanent).
CL_UFFD_SYSCTL=/proc/sys/vm/unprivileged_userfaultfd
cl_memory_mode_setup() {
  local old
  [ "${CLOUDLET_MEMORY_MODE:-}" = postcopy ] || return 0
  old=$(cat "$CL_UFFD_SYSCTL") || cl_die "no $CL_UFFD_SYSCTL: this kernel has no userfaultfd"
  [ "$old" = 1 ] && return 0
  echo 1 >"$CL_UFFD_SYSCTL" || cl_die "cannot set $CL_UFFD_SYSCTL"
  cl_at_exit "echo $old >$CL_UFFD_SYSCTL"
  cl_log "memory mode postcopy: vm.unprivileged_userfaultfd 1 for this test (was $old)"
}

# ---------------------------------------------------------------- domains
cl_domain_exists() { cl_virsh domstate "$1" >/dev/null 2>&1; }
cl_domstate() { cl_virsh domstate "$1" 2>/dev/null | head -1; }

cl_destroy() {
  local name=$1
  if cl_domain_exists "$name"; then
    cl_virsh destroy "$name" >/dev/null 2>&1 || true
    cl_virsh undefine "$name" >/dev/null 2>&1 || true
  fi
  rm -rf "${CL_RUN_ROOT:?}/$name"
  return 0
}

# cl_cleanup [PREFIX]: destroy (and undefine) every domain whose name starts with PREFIX.
cl_cleanup() {
  local prefix=${1:-cl-test-} d
  [ -n "$prefix" ] || return 0
  timeout 10 virsh -c "$CL_VIRSH_URI" version >/dev/null 2>&1 || return 0
  for d in $(cl_virsh list --all --name 2>/dev/null); do
    case "$d" in "$prefix"*) cl_destroy "$d" ;; esac
  done
  return 0
}

# cl_qemu_log NAME: tail of libvirt's QEMU log for a domain (for error messages).
cl_qemu_log() { tail -n 20 "/var/log/libvirt/qemu/$1.log" 2>/dev/null >&2 || true; }

# cl_synthesis NAME OUT ERR ARGS...: start `$CLOUDLET synthesis ARGS --name NAME` in the
# background (a helper; its pid in CL_SYNTH_PID), stdout to OUT, stderr to ERR, and wait
# (300 s) until it says "VM resumed"; otherwise show its output and the QEMU log and die.
cl_synthesis() {
  local name=$1 out=$2 err=$3 end
  shift 3
  "${CLOUDLET:?}" synthesis "$@" --name "$name" >"$out" 2>"$err" </dev/null &
  CL_SYNTH_PID=$!
  CL_HELPER_PIDS+=("$CL_SYNTH_PID")
  end=$((SECONDS + 300))
  until grep -q -e "VM resumed" -e '"event":"running"' "$out"; do
    if ! kill -0 "$CL_SYNTH_PID" 2>/dev/null || [ $SECONDS -ge $end ]; then
      cat "$out" "$err" >&2
      cl_qemu_log "$name"
      cl_die "synthesis did not resume the VM"
    fi
    sleep 0.1
  done
}

# cl_create XMLFILE [--paused]: start a transient domain.
cl_create() {
  local xml=$1 name
  shift
  name=$($CL_GUESTCTL xml-get "$xml" name)
  if ! cl_virsh create "$xml" "$@" >/dev/null; then
    cl_qemu_log "$name"
    echo "ERROR: virsh create $xml failed" >&2
    return 1
  fi
}

# cl_console_sock NAME
cl_console_sock() { cl_virsh dumpxml "$1" | $CL_GUESTCTL xml-get - console; }

# cl_console NAME TIMEOUT CMD: run a one-line shell command in the guest (< 3800 bytes).
cl_console() {
  local sock
  sock=$(cl_console_sock "$1") || { echo "ERROR: no domain $1" >&2; return 1; }
  $CL_GUESTCTL console-cmd "$sock" "$2" "$3"
}

# cl_console_wait NAME TIMEOUT: until the guest shell answers.
cl_console_wait() {
  local sock
  sock=$(cl_console_sock "$1") || return 1
  $CL_GUESTCTL console-wait "$sock" "$2"
}

# cl_wait_log FILE TIMEOUT MARKER [FAILMARKER]: wait until MARKER appears in FILE.
cl_wait_log() {
  local f=$1 t=$2 m=$3 fm=${4:-} end
  end=$((SECONDS + t))
  while [ $SECONDS -lt $end ]; do
    if [ -f "$f" ] && grep -a -q -- "$m" "$f"; then return 0; fi
    if [ -n "$fm" ] && [ -f "$f" ] && grep -a -q -- "$fm" "$f"; then
      echo "ERROR: $fm in $f:" >&2; grep -a -- "$fm" "$f" >&2; return 1
    fi
    sleep 0.5
  done
  return 1
}

# cl_boot XML NAME [TIMEOUT]: cold-boot, wait for the ready marker in the serial log (if the
# XML has one and it gets written) and for a shell on the console. Bounded.
cl_boot() {
  local xml=$1 name=$2 t=${3:-240} log end
  end=$((SECONDS + t))
  log=$($CL_GUESTCTL xml-get "$xml" log)
  [ -z "$log" ] || rm -f "$log"
  cl_create "$xml" || return 1
  if [ -n "$log" ]; then
    while [ $SECONDS -lt $end ]; do
      if [ -f "$log" ] && grep -a -q CLOUDLET-GUEST-ERROR "$log"; then
        echo "ERROR: guest $name:" >&2; grep -a CLOUDLET-GUEST-ERROR "$log" >&2; return 1
      fi
      [ -f "$log" ] && grep -a -q "$CL_READY_MARKER" "$log" && break
      if [ ! -f "$log" ] && [ $((t - (end - SECONDS))) -ge 20 ]; then
        cl_log "no serial log $log after 20 s; waiting on the console instead"
        break
      fi
      if [ "$(cl_domstate "$name")" != running ]; then
        echo "ERROR: guest $name is $(cl_domstate "$name") while booting" >&2; cl_qemu_log "$name"; return 1
      fi
      sleep 0.5
    done
  fi
  if [ $SECONDS -ge $end ] || ! cl_console_wait "$name" $((end - SECONDS > 30 ? end - SECONDS : 30)); then
    echo "ERROR: guest $name not ready within ${t}s; serial log tail:" >&2
    [ -z "$log" ] || tail -c 3000 "$log" >&2 2>/dev/null
    cl_qemu_log "$name"
    return 1
  fi
}

# cl_vm_xml IN OUT NAME DISK MEM [SHARE [LOG]]: copy of domain XML IN for domain NAME on these
# files; console socket in cl_sockdir NAME; serial log LOG (default: console.log in cl_sockdir
# NAME, removed with the domain). No -incoming (cl_resume adds it).
cl_vm_xml() {
  local in=$1 out=$2 name=$3 disk=$4 mem=$5 share=${6:-on} log=${7:-} sd
  sd=$(cl_sockdir "$name")
  [ -n "$log" ] || log=$sd/console.log
  $CL_GUESTCTL xml-edit "$in" --name "$name" --disk "$disk" --mem "$mem" --share "$share" \
    --console "$sd/console.sock" --log "$log" --no-incoming >"$out"
}

# cl_new_xml OUT NAME TYPE KERNEL INITRD DISK MEM [LOG]: a fresh domain XML (cold boot).
cl_new_xml() {
  local out=$1 name=$2 type=$3 kernel=$4 initrd=$5 disk=$6 mem=$7 log=${8:-} sd
  sd=$(cl_sockdir "$name")
  [ -n "$log" ] || log=$sd/console.log
  $CL_GUESTCTL xml --name "$name" --type "$type" --machine "$(cl_machine "$type")" \
    --kernel "$kernel" --initrd "$initrd" --disk "$disk" --mem "$mem" --mem-mib "$CL_MEM_MIB" \
    --console "$sd/console.sock" --log "$log" >"$out"
}

# cl_machine TYPE: the versioned machine type libvirt resolves "pc" to (e.g. pc-i440fx-7.2),
# so that stored XML and device state keep matching.
cl_machine() {
  local m
  m=$(cl_virsh domcapabilities --virttype "$1" --arch x86_64 --machine pc 2>/dev/null |
      sed -n 's|.*<machine>\(.*\)</machine>.*|\1|p' | head -1)
  echo "${m:-pc}"
}

# cl_scratch VAR QDIR NAME: set VAR to a fresh scratch directory QEMU can use (QDIR/run/NAME-PID),
# removed at exit. (Not for $(...): it registers the removal in the calling shell.)
cl_scratch() {
  local d=$2/run/$3-$$
  rm -rf "$d"
  mkdir -p "$d"
  chmod 0755 "$2/run" "$d"
  cl_at_exit "rm -rf '$d'"
  printf -v "$1" '%s' "$d"
}

# cl_qmp NAME JSON: QMP through libvirt; prints the answer.
cl_qmp() { cl_virsh qemu-monitor-command "$1" "$2"; }

cl_migrate_status() { $CL_GUESTCTL qmp-status "$(cl_qmp "$1" '{"execute":"query-migrate"}' 2>/dev/null || echo '{}')"; }

# cl_wait_migration NAME TIMEOUT: until query-migrate says completed. Bounded.
cl_wait_migration() {
  local name=$1 t=$2 end st=""
  end=$((SECONDS + t))
  while [ $SECONDS -lt $end ]; do
    st=$(cl_migrate_status "$name")
    case "$st" in
      completed) return 0 ;;
      failed | cancelled | error)
        echo "ERROR: migration on $name: $st" >&2
        cl_qmp "$name" '{"execute":"query-migrate"}' >&2 || true
        cl_qemu_log "$name"
        return 1 ;;
    esac
    sleep 0.2
  done
  echo "ERROR: migration on $name not completed within ${t}s (last status: $st)" >&2
  return 1
}

cl_set_ignore_shared() {
  cl_qmp "$1" '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]}}' >/dev/null
}

# cl_snapshot NAME STATEFILE [TIMEOUT]: pause and save the device state (RAM stays in the
# domain's share=on RAM file). The domain is left paused (postmigrate); destroy it after.
cl_snapshot() {
  local name=$1 state=$2 t=${3:-180} sd sock pid i
  sd=$(cl_sockdir "$name")
  sock=$sd/mig-out.sock
  rm -f "$state" "$sock"
  cl_set_ignore_shared "$name" || return 1
  cl_virsh suspend "$name" >/dev/null || return 1
  $CL_GUESTCTL mig-recv "$sock" "$state" "$t" &
  pid=$!
  CL_HELPER_PIDS+=("$pid")
  for i in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
  [ -S "$sock" ] || { echo "ERROR: migration reader did not start" >&2; return 1; }
  cl_qmp "$name" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$sock\"}}" >/dev/null || return 1
  cl_wait_migration "$name" "$t" || return 1
  if ! cl_wait_helper "$pid"; then echo "ERROR: migration reader failed" >&2; return 1; fi
  [ -s "$state" ] || { echo "ERROR: empty state file $state" >&2; return 1; }
}

# cl_resume XML NAME STATEFILE [TIMEOUT]: XML must name domain NAME and point at the disk and
# RAM file to use (see cl_vm_xml); -incoming defer is added here. Leaves the domain running.
cl_resume() {
  local xml=$1 name=$2 state=$3 t=${4:-180} sd sock inxml pid
  sd=$(cl_sockdir "$name")
  sock=$sd/mig-in.sock
  inxml=$sd/incoming.xml
  rm -f "$sock"
  $CL_GUESTCTL xml-edit "$xml" --name "$name" --incoming >"$inxml" || return 1
  cl_create "$inxml" --paused || return 1
  cl_set_ignore_shared "$name" || return 1
  cl_qmp "$name" "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:$sock\"}}" >/dev/null || return 1
  $CL_GUESTCTL mig-send "$sock" "$state" "$t" &
  pid=$!
  CL_HELPER_PIDS+=("$pid")
  cl_wait_migration "$name" "$t" || return 1
  if ! cl_wait_helper "$pid"; then echo "ERROR: sending $state failed" >&2; return 1; fi
  cl_virsh resume "$name" >/dev/null || return 1
  [ "$(cl_domstate "$name")" = running ] || { echo "ERROR: $name is $(cl_domstate "$name") after resume" >&2; return 1; }
}

# ---------------------------------------------------------------- accelerator
# cl_accel KERNEL INITRD: print the domain type to use, "kvm" if a KVM guest really reaches its
# init here, else "qemu" (TCG). Cached per boot in $CL_STATE_ROOT/accel; CL_ACCEL overrides.
cl_accel() {
  if [ -n "${CL_ACCEL:-}" ]; then echo "$CL_ACCEL"; return 0; fi
  local cache=$CL_STATE_ROOT/accel boot
  boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)
  if [ -f "$cache" ] && [ "$(cut -d' ' -f1 "$cache")" = "$boot" ]; then
    cut -d' ' -f2 "$cache"
    return 0
  fi
  local type=qemu why="no usable /dev/kvm"
  if [ -c /dev/kvm ]; then
    local name=${CL_PREFIX}kvmprobe d sd
    d=$(mktemp -d "$CL_STATE_ROOT/kvmprobe.XXXXXX" 2>/dev/null || { mkdir -p "$CL_STATE_ROOT"; mktemp -d "$CL_STATE_ROOT/kvmprobe.XXXXXX"; })
    chmod 0755 "$d"
    truncate -s 1M "$d/disk.img"
    truncate -s "${CL_MEM_MIB}M" "$d/mem.img"
    cl_own_ram "$d/mem.img"
    sd=$(cl_sockdir "$name")
    $CL_GUESTCTL xml --name "$name" --type kvm --kernel "$1" --initrd "$2" --disk "$d/disk.img" \
      --mem "$d/mem.img" --console "$sd/console.sock" --log "$d/console.log" >"$d/probe.xml"
    if cl_virsh create "$d/probe.xml" >/dev/null 2>"$d/err"; then
      if cl_wait_log "$d/console.log" "${CL_KVM_PROBE_TIMEOUT:-20}" CLOUDLET-INIT-START; then
        type=kvm
      else
        why="a KVM guest did not reach its init within ${CL_KVM_PROBE_TIMEOUT:-20} s"
      fi
    else
      why="libvirt refused a kvm domain: $(head -c 300 "$d/err")"
    fi
    cl_destroy "$name"
    rm -rf "$d"
  fi
  [ "$type" = qemu ] && cl_log "NOTICE: KVM does not work here ($why); using TCG (domain type qemu)"
  mkdir -p "$CL_STATE_ROOT"
  echo "$boot $type" >"$cache"
  echo "$type"
}

# ---------------------------------------------------------------- workload helpers
# The guest command that lists md5sums of everything the reference workload wrote
# (make-workload.sh records its output as custom/checksums.txt; test_workload.sh compares).
CL_WORKLOAD_SUMS_CMD='cd / && find /mnt/data /ram -type f | sort | xargs md5sum && md5sum /mnt/base/inplace.bin'
