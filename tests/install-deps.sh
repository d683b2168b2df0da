#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Installs what cloudlet needs to build, test and run on Debian 12.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

packages=(
	build-essential cmake pkg-config clang-format clang libclang-rt-14-dev
	liblzma-dev libzstd-dev libssl-dev libmsgpack-dev libxml2-dev libcurl4-openssl-dev
	libfuse3-dev fuse3 libvirt-dev libcmocka-dev
	xdelta3 xz-utils zstd bc python3 cpio e2fsprogs busybox-static
	libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
	nginx-light squashfuse squashfs-tools fio curl iproute2
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# /dev/kvm as Debian's udev rule leaves it: group kvm, mode 0660. Hosts without
# udev (containers, debootstrap roots) keep the kernel's 0600 root:root. libvirt
# probes QEMU's capabilities with CAP_DAC_OVERRIDE, so the probe opens it and
# records KVM; its cache check, made as QEMU's user without that capability,
# cannot, so the cache is stale at every look-up and each domain start probes
# QEMU again (30-50 s). `cloudlet check` measures it; `cloudlet check --fix` does
# what follows.
qemu_user=libvirt-qemu
if [ -c /dev/kvm ] && getent passwd "$qemu_user" >/dev/null && getent group kvm >/dev/null &&
	! runuser -u "$qemu_user" -- test -r /dev/kvm -a -w /dev/kvm; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: warning: $qemu_user cannot use /dev/kvm, so libvirt starts domains slowly; as root: cloudlet check --fix" >&2
		exit 0
	fi
	if ! id -nG "$qemu_user" | grep -qw kvm; then
		echo "install-deps: adding $qemu_user to group kvm"
		usermod -aG kvm "$qemu_user"
	fi
	echo "install-deps: /dev/kvm was $(stat -c '%a %U:%G' /dev/kvm), which $qemu_user cannot use" \
		"(libvirt would probe QEMU again at every domain start); giving it group kvm and mode 0660" \
		"as Debian's udev rule does"
	chgrp kvm /dev/kvm
	chmod g+rw /dev/kvm
fi
