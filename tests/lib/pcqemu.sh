# SPDX-License-Identifier: GPL-2.0-only
# Sourced by the tests that resume a saved guest in a stock QEMU 7.2 run
# without libvirt from a postcopy stream (tests/shell/postcopy_qemu.sh,
# tests/guest/test_postcopy_source.sh). The caller sets T (its temporary
# directory), QEMU, SRC and a fail function.
#   pc_qemu NAME RAMFILE DISK [ARGS...]  QEMU as the saved machine, see below
#   pc_stop_qemu                         kills it
#   pc_workload_complete DIR             the guest workload in DIR is whole
#   pc_use_workload DIR                  its custom/ save: STATE RAMIMG DISK KERNEL
#                                        INITRD CMDLINE ACCEL BLOB_MD5 (shared lock, fd 9)
QMP="python3 $SRC/tests/lib/qmp.py"
GCTL="python3 $SRC/tests/guest/guestctl.py"
QPID=

# pc_qemu NAME RAMFILE DISK [ARGS...]: starts QEMU as the saved machine was
# (RAM the size of $RAMIMG), QMP on $T/NAME.qmp, console on $T/NAME.con; the
# pid in QPID; returns when QMP listens.
pc_qemu() {
	local name=$1 ram=$2 disk=$3 mib i
	shift 3
	mib=$(($(stat -c %s "$RAMIMG") >> 20))
	rm -f "$T/$name.qmp" "$T/$name.con"
	"$QEMU" -name "cl-postcopy-$name" \
		-machine "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=cl-ram" \
		-accel "$ACCEL" -cpu qemu64 -m "$mib" -overcommit mem-lock=off \
		-object "memory-backend-file,id=cl-ram,size=${mib}M,mem-path=$ram,share=on" \
		-smp 1,sockets=1,cores=1,threads=1 -display none -no-user-config -nodefaults \
		-rtc base=utc -no-shutdown -boot strict=on \
		-kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE" \
		-drive "file=$disk,format=raw,if=none,id=drive0,discard=unmap,snapshot=on" \
		-device virtio-blk-pci,bus=pci.0,addr=0x2,drive=drive0,id=virtio-disk0,bootindex=1 \
		-chardev "socket,id=charserial0,path=$T/$name.con,server=on,wait=off" \
		-device isa-serial,chardev=charserial0,id=serial0,index=0 \
		-device virtio-balloon-pci,id=balloon0,free-page-reporting=on,bus=pci.0,addr=0x3 \
		-qmp "unix:$T/$name.qmp,server=on,wait=off" "$@" >"$T/$name.log" 2>&1 &
	QPID=$!
	for i in $(seq 300); do
		[ -S "$T/$name.qmp" ] && return 0
		kill -0 "$QPID" 2>/dev/null || fail "QEMU ($name) exited at start"
		sleep 0.1
	done
	fail "QEMU ($name) does not listen on QMP"
}

pc_stop_qemu() {
	kill "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
	QPID=
}

pc_workload_complete() {
	local f
	[ -f "$1/.done" ] || return 1
	for f in guest/vmlinuz guest/initrd.img custom/disk.img custom/memory.img custom/state \
		custom/domain.xml custom/checksums.txt; do
		[ -s "$1/$f" ] || return 1
	done
}

pc_use_workload() {
	local w=$1 x=$1/custom/domain.xml
	exec 9<"$w/.lock"
	flock -s -w 600 9 || fail "the workload $w stays locked"
	pc_workload_complete "$w" || fail "the workload $w went away"
	STATE=$w/custom/state
	RAMIMG=$w/custom/memory.img
	DISK=$w/custom/disk.img
	KERNEL=$w/guest/vmlinuz
	INITRD=$w/guest/initrd.img
	CMDLINE=$(sed -n 's|.*<cmdline>\(.*\)</cmdline>.*|\1|p' "$x")
	grep -q 'type="kvm"' "$x" && ACCEL=kvm || ACCEL=tcg
	BLOB_MD5=$(awk '$2 == "/ram/blob.bin" { print $1 }' "$w/custom/checksums.txt")
	[ -n "$BLOB_MD5" ] || fail "no md5 of /ram/blob.bin in $w/custom/checksums.txt"
	echo "save: the workload's custom/ ($w), accel $ACCEL"
}
