# SPDX-License-Identifier: GPL-2.0-only
# Sourced by tests: a private nginx on 127.0.0.1 (Debian nginx-light).
#   cl_nginx_start DIR ROOT [SERVER_CONFIG]   serve ROOT; state in DIR; sets NGINX_PORT
#   cl_nginx_stop                             stop it (also call from your EXIT trap)
#   cl_nginx_restart [SECONDS]                start it again as last started, on the
#                                             same port (after SECONDS, if given)
# SERVER_CONFIG is extra text inside server { }, e.g. "location /slow/ { limit_rate 5m; }".
# The log format cl_ranges adds the Range header and the bytes sent, e.g. for
# SERVER_CONFIG "access_log DIR/ranges.log cl_ranges;".

NGINX_PID=
NGINX_PORT=
NGINX_DIR=
NGINX_ROOT=
NGINX_EXTRA=

cl_nginx_bin() {
	command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }
}

cl_nginx_start() {
	local dir=$1 root=$2 extra=${3:-} bin i
	bin=$(cl_nginx_bin) || return 77
	[ -n "$bin" ] || return 77
	NGINX_DIR=$dir
	NGINX_ROOT=$root
	NGINX_EXTRA=$extra
	mkdir -p "$dir/body"
	[ -n "$NGINX_PORT" ] || NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
	access_log $dir/access.log;
	log_format cl_ranges '\$request_method \$request_uri \$status "\$http_range" \$body_bytes_sent';
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/body;
	fastcgi_temp_path $dir/body;
	uwsgi_temp_path $dir/body;
	scgi_temp_path $dir/body;
	default_type application/octet-stream;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $root;
		$extra
	}
}
CONF
	"$bin" -c "$dir/nginx.conf" -e "$dir/error.log" &
	NGINX_PID=$!
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null; then
			return 0
		fi
		kill -0 "$NGINX_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "nginx did not start on 127.0.0.1:$NGINX_PORT:" >&2
	cat "$dir/error.log" >&2 2>/dev/null
	return 1
}

cl_nginx_stop() {
	if [ -n "$NGINX_PID" ]; then
		kill "$NGINX_PID" 2>/dev/null
		wait "$NGINX_PID" 2>/dev/null
		NGINX_PID=
	fi
	return 0
}

cl_nginx_restart() {
	[ -n "$NGINX_DIR" ] || { echo "cl_nginx_restart: nginx was never started" >&2; return 1; }
	cl_nginx_stop
	[ -z "${1:-}" ] || sleep "$1"
	cl_nginx_start "$NGINX_DIR" "$NGINX_ROOT" "$NGINX_EXTRA"
}
