#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# What cloudletfs accepts from a web server (issue 5, security): a real nginx
# on 127.0.0.1, the real daemon, a small generated overlay.
#  1. redirects to another scheme are refused, for the meta and for the
#     pack: file:///etc/passwd, file:// of the right pack bytes (so only the
#     scheme check can stop it), ftp://; `cloudlet mount` fails in bounded
#     time with one line naming the refused scheme; nothing is mounted.
#     A redirect loop fails too (too many redirects).
#  2. an http -> http redirect (same scheme) of both meta and pack is
#     followed: the mount serves apply's bytes (the refusals above are the
#     scheme check's, not a refusal of every redirect).
#  3. a meta the server claims to be 100 GB (a sparse file) is refused
#     before anything is allocated: one line naming the size and the limit,
#     quickly, the daemon's peak memory small.
#  4. the daemon writes only under its cache directory, into one directory
#     named by the overlay id in hex (the id comes from the overlay, so
#     it must never reach a path unchecked).
# Exit 77 only if /dev/fuse or nginx is missing.
CL_SOURCE_DIR=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
# shellcheck source=tests/lib/clfs.sh
source "$CL_SOURCE_DIR/tests/lib/clfs.sh"
cl_fs_init http-security

mkdir -p "$T/ov" "$T/mnt" "$T/www/fast" "$T/www/huge"
py gen "$T" 4 2 || fail "image generation"
cl base "$T/base.disk" --memory "$T/base.mem" || fail "cloudlet base"
cl overlay "$T/base.disk" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" \
	--domain "$T/domain.xml" -o "$T/ov" --segment-size 64K || fail "cloudlet overlay"
cl apply "$T/base.disk" "$T/ov" -o "$T/apply" || fail "cloudlet apply"
ln "$T/ov/overlay-meta" "$T/ov/overlay-blob" "$T/www/fast/" || fail "ln"
truncate -s 100G "$T/www/huge/overlay-meta" || fail "truncate"
cl_nginx_start "$T/nginx" "$T/www" "
		location = /etc/overlay-meta { return 302 file:///etc/passwd; }
		location = /file/overlay-meta { return 302 file://$T/ov/overlay-meta; }
		location = /filepack/overlay-meta { return 302 /fast/overlay-meta; }
		location = /filepack/overlay-blob { return 302 file://$T/ov/overlay-blob; }
		location = /ftp/overlay-meta { return 302 ftp://127.0.0.1:21/overlay-meta; }
		location = /loop/overlay-meta { return 302 /loop/overlay-meta; }
		location = /moved/overlay-meta { return 302 \$scheme://\$http_host/fast/overlay-meta; }
		location = /moved/overlay-blob { return 302 /fast/overlay-blob; }" ||
	fail "nginx did not start"
U=http://127.0.0.1:$NGINX_PORT

# refused NAME REGEX: mounting $U/NAME/overlay-meta fails within 10 s with
# one line matching REGEX, and nothing is mounted.
refused() {
	local t0
	MP=$T/mnt/$1
	mkdir -p "$MP"
	ms
	t0=$REPLY
	cl mount "$T/base.disk" "$U/$1/overlay-meta" "$MP" -o no_cache,fetch_timeout=5
	rc=$?
	ms
	[ $rc = 1 ] || fail "cloudlet mount exited $rc"
	[ $((REPLY - t0)) -lt 10000 ] || fail "took $((REPLY - t0)) ms"
	[ "$(wc -l <"$T/err")" = 1 ] && grep -qiE "$2" "$T/err" || fail "not one line matching /$2/"
	mounted "$MP" && fail "mounted"
	ok "exit 1 after $((REPLY - t0)) ms: $(cat "$T/err")"
	MP=
}

CASE=1-redirect-file-etc-passwd
refused etc "unsupported scheme.*file"
CASE=1-redirect-file-meta
refused file "unsupported scheme.*file"
CASE=1-redirect-file-pack
refused filepack "overlay-blob.*unsupported scheme.*file"
CASE=1-redirect-ftp
refused ftp "unsupported scheme.*ftp"
CASE=1-redirect-loop
refused loop "redirects"

CASE=2-redirect-same-scheme
mount_ov moved "$U/moved/overlay-meta" "cache_dir=$T/cache"
wait_state complete 30 || fail "not complete within 30 s"
cmp_all
ok "followed to /fast/: complete; images, state, domain.xml = apply"
umount_ov

CASE=4-writes-only-in-cache
# Everything the mount of case 2 left: one directory named by the overlay id.
id=$(timeout 10 "$C" -q info "$T/ov" 2>/dev/null | sed -n 's/^id  *//p')
[ -n "$id" ] || fail "cloudlet info shows no overlay id"
list=$(cd "$T/cache" && find . -mindepth 1 -maxdepth 1)
[ "$(wc -l <<<"$list")" = 1 ] && grep -qE '^\./[0-9a-f]{64}$' <<<"$list" ||
	fail "the cache holds: $list"
[ "./$id" = "$list" ] || fail "cache $list, overlay id $id"
ok "the cache holds ${list#./} (the overlay id) only"

CASE=3-huge-meta
MP=$T/mnt/huge
mkdir -p "$MP"
ms
t0=$REPLY
if [ -x /usr/bin/time ]; then
	timeout 60 /usr/bin/time -f %M -o "$T/rss" "$FS" "$U/huge/overlay-meta" "$MP" \
		-o base="$T/base.disk",no_cache -f >"$T/out" 2>"$T/err"
else
	timeout 60 "$FS" "$U/huge/overlay-meta" "$MP" -o base="$T/base.disk",no_cache -f \
		>"$T/out" 2>"$T/err"
fi
rc=$?
ms
[ $rc = 1 ] || fail "cloudletfs exited $rc"
[ $((REPLY - t0)) -lt 10000 ] || fail "took $((REPLY - t0)) ms"
grep -v "^[0-9]*$" "$T/err" >"$T/err1"
mv "$T/err1" "$T/err"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q "107374182400 bytes is more than the" "$T/err" ||
	fail "not one line naming the size and the limit"
mounted "$MP" && fail "mounted"
rss=
if [ -s "$T/rss" ]; then
	rss=$(tail -1 "$T/rss")
	[ "$rss" -lt 102400 ] || fail "the daemon peaked at $rss KiB"
	rss="; peak RSS $rss KiB"
fi
ok "exit 1 after $((REPLY - t0)) ms$rss: $(cat "$T/err")"
MP=

echo "PASS"
