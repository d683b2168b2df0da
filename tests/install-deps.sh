#!/bin/bash
# Installs what cloudlet needs to build, test and run on Debian 12.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

packages=(
	build-essential cmake pkg-config clang-format clang libclang-rt-14-dev
	liblzma-dev libzstd-dev libssl-dev libmsgpack-dev libxml2-dev libcurl4-openssl-dev
	libfuse3-dev fuse3 libvirt-dev libcmocka-dev
	xdelta3 xz-utils zstd bc python3 cpio e2fsprogs busybox-static
	libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
	nginx-light squashfuse squashfs-tools fio
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
