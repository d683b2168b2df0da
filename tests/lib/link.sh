# SPDX-License-Identifier: GPL-2.0-only
# Sourced by tests and benchmarks: a slow link in front of one port on 127.0.0.1, shared by
# every connection to it, as a real link is (an HTB class on lo for the port's packets).
# nginx's limit_rate is no substitute: it limits each request on its own and lets the first
# second's worth of every response through at once, so small ranged reads are not slowed.
#   cl_link_shape PORT RATE    e.g. cl_link_shape "$NGINX_PORT" 40mbit (tc rate units)
#   cl_link_unshape PORT       (call it from the EXIT trap too)
#   cl_link_bytes PORT         bytes sent through the port's class so far
# cl_link_shape returns 77 when the machine cannot shape (no tc, not root, no HTB).
# Several ports may be shaped at once (one class and one filter each, keyed by the port).

cl_link_class() { printf '1:%x' "$1"; }
# cl_link_bytes PORT: the bytes the port's class has sent so far (what crossed the link).
cl_link_bytes() { tc -s class show dev lo classid "$(cl_link_class "$1")" | awk '/Sent/ { print $2; exit }'; }

cl_link_shape() {
	local port=$1 rate=$2 cls
	command -v tc >/dev/null || return 77
	[ "$(id -u)" = 0 ] || return 77
	if ! tc qdisc show dev lo | grep -q '^qdisc htb 1: root'; then
		# Unclassified packets (every other port) bypass the classes, unshaped.
		tc qdisc add dev lo root handle 1: htb r2q 100 2>/dev/null ||
			tc qdisc show dev lo | grep -q '^qdisc htb 1: root' || return 77
	fi
	cls=$(cl_link_class "$port")
	tc class replace dev lo parent 1: classid "$cls" htb rate "$rate" ceil "$rate" \
		quantum 65536 || return 1
	tc filter del dev lo parent 1: protocol ip prio "$port" 2>/dev/null || true
	tc filter add dev lo parent 1: protocol ip prio "$port" u32 \
		match ip sport "$port" 0xffff flowid "$cls" || return 1
}

cl_link_unshape() {
	local port=$1
	command -v tc >/dev/null || return 0
	tc filter del dev lo parent 1: protocol ip prio "$port" 2>/dev/null || true
	tc class del dev lo classid "$(cl_link_class "$port")" 2>/dev/null || true
	# The root goes with the last class.
	[ -n "$(tc class show dev lo 2>/dev/null)" ] || tc qdisc del dev lo root 2>/dev/null || true
}

# cl_link_require PORT RATE: cl_link_shape, or exit: 77 (with the reason) when the machine
# cannot shape, 1 when tc fails. Remove it with cl_link_unshape in the EXIT trap.
cl_link_require() {
	local rc=0
	cl_link_shape "$1" "$2" || rc=$?
	case $rc in
	0) return 0 ;;
	77) cl_skip_test "cannot shape a slow link on lo (needs root, tc and the HTB qdisc)" ;;
	*) echo "ERROR: tc could not shape port $1 on lo to $2" >&2; exit 1 ;;
	esac
}
