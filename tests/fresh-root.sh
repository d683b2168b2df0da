#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# fresh-root.sh: the README's test command on a fresh Debian 12, as a new user
# would run it. Makes a minimal root (debootstrap --variant=minbase bookworm,
# plus git), clones the current commit into /root/project there, and runs
# `CI=true bash .ci/run` in it, as root, in its own PID and mount namespaces:
# its own /proc, /run and /tmp, and a /dev of its own with only the device
# nodes a new machine has (so /dev/kvm is the kernel's 0600 root:root, as on
# a host without udev), /sys bound from the host. The network (lo) is the
# host's: run nothing else that uses nginx, tc or libvirt meanwhile. The
# packages come from the mirror this host's apt uses.
#
#   tests/fresh-root.sh [ROOT_DIR]   (default /var/tmp/cloudlet-fresh-root)
#
# ROOT_DIR is made anew on every run. Exit status: that of .ci/run; its output
# is also in ROOT_DIR.log.
set -euo pipefail
# The whole script is one function, read before it runs: bash reads a script
# as it goes, and this one runs for a quarter of an hour while the tree may change.
main() {
src=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/var/tmp/cloudlet-fresh-root}
die() { echo "fresh-root: $*" >&2; exit 1; }
say() { echo "fresh-root: [$(date -u +%H:%M:%S)] $*"; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, namespaces)"
commit=$(git -C "$src" rev-parse HEAD) || die "$src is not a git checkout"
[ -z "$(git -C "$src" status --porcelain --untracked-files=no)" ] ||
	say "warning: uncommitted changes in $src are not tested, only $commit"

# The Debian mirror this host's apt uses (deb822 or one-line sources).
mirror() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f"
	done
	if [ -f /etc/apt/sources.list ]; then
		awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list
	fi
}
url=$(mirror | head -1)
[ -n "$url" ] || die "no Debian mirror in /etc/apt/sources.list{,.d}"
if ! command -v debootstrap >/dev/null; then
	say "installing debootstrap"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# A root left by an earlier run: its mounts died with its namespace.
if [ -e "$root" ]; then
	findmnt -R -n -o TARGET "$root" >/dev/null 2>&1 && die "$root has mounts: unmount them first"
	rm -rf --one-file-system "$root"
fi
say "debootstrap --variant=minbase bookworm into $root"
debootstrap --variant=minbase --include=git,ca-certificates bookworm "$root" "$url" \
	>"$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log"; die "debootstrap failed"; }
# apt inside sees what apt here sees (mirrors, security updates, settings).
rm -f "$root/etc/apt/sources.list"
cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/"
[ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$root/etc/apt/"
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"
cp /etc/resolv.conf "$root/etc/" 2>/dev/null || true
say "cloning $commit into $root/root/project"
git clone -q --no-local "$src" "$root/root/project"
git -C "$root/root/project" checkout -q "$commit"

# Inside new namespaces: mounts vanish with them, whatever happens.
inner() {
	local r=$1
	# The root a mount point, as on a machine: libvirt makes QEMU's mount
	# namespace private from "/" (MS_SLAVE), which fails on a plain directory.
	mount --bind "$r" "$r"
	mount -t proc proc "$r/proc"
	mount --rbind /sys "$r/sys"
	mount -t tmpfs -o mode=0755,size=64m dev "$r/dev"
	mkdir -p "$r/dev/pts" "$r/dev/shm" "$r/dev/net"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
	ln -s pts/ptmx "$r/dev/ptmx"
	mount -t tmpfs -o mode=1777 shm "$r/dev/shm"
	# The nodes a new machine has, with the kernel's modes (no udev rules).
	mknod -m 0666 "$r/dev/null" c 1 3
	mknod -m 0666 "$r/dev/zero" c 1 5
	mknod -m 0666 "$r/dev/full" c 1 7
	mknod -m 0666 "$r/dev/random" c 1 8
	mknod -m 0666 "$r/dev/urandom" c 1 9
	mknod -m 0666 "$r/dev/tty" c 5 0
	mknod -m 0666 "$r/dev/fuse" c 10 229
	mknod -m 0600 "$r/dev/net/tun" c 10 200
	[ ! -c /dev/kvm ] || mknod -m 0600 "$r/dev/kvm" c 10 232
	ln -s /proc/self/fd "$r/dev/fd"
	mount -t tmpfs -o mode=0755 run "$r/run"
	mount -t tmpfs -o mode=1777 tmp "$r/tmp"
	exec chroot "$r" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 TERM=dumb CI=true /bin/bash -c 'cd /root/project && exec bash .ci/run'
}
say "running CI=true bash .ci/run in $root/root/project (log: $root.log)"
rc=0
# After a run the host's /dev/kvm was found with the root's kvm gid (something
# inside, likely libvirt's device setup for QEMU, reaches the host's node):
# put the host's mode and owner back.
kvm_mode=$(stat -c '%a %u:%g' /dev/kvm 2>/dev/null || true)
unshare --pid --fork --mount --propagation private \
	bash -c "$(declare -f inner); inner '$root'" </dev/null 2>&1 | tee "$root.log" || rc=$?
if [ -n "$kvm_mode" ]; then
	chown "${kvm_mode#* }" /dev/kvm
	chmod "${kvm_mode%% *}" /dev/kvm
fi
say "exit $rc; commit $commit; kernel $(uname -r)"
exit $rc
}
main "$@"
