#!/usr/bin/env bash
# dev-services.sh — make the PostgreSQL and Redis that Parlor's tests and `task up` need
# available on this machine (Debian 12), starting or installing them when needed.
#
#   PostgreSQL at 127.0.0.1:5432: role parlor / password parlor with CREATEDB,
#              database parlor owned by it (TEST_DB_URL / DB_URL default).
#   Redis      at 127.0.0.1:6379 (TEST_REDIS_URL default), no persistence.
#   Chromium   at /usr/bin/chromium (Debian's package), with --browser only: for the browser
#              end-to-end test (web/e2e/, run by cmd/parlor/browser_test.go).
#
# Idempotent and quick when all are already there: it only checks, then prints one line.
# Overrides: DEV_PG_HOST, DEV_PG_PORT, DEV_REDIS_HOST, DEV_REDIS_PORT. A non-local host is
# only checked, never started. CHROMIUM_PATH: a Chromium elsewhere (then nothing is installed).
set -euo pipefail

PG_HOST=${DEV_PG_HOST:-127.0.0.1}
PG_PORT=${DEV_PG_PORT:-5432}
REDIS_HOST=${DEV_REDIS_HOST:-127.0.0.1}
REDIS_PORT=${DEV_REDIS_PORT:-6379}
PG_URL="postgres://parlor:parlor@${PG_HOST}:${PG_PORT}/parlor?sslmode=disable"

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf 'dev-services: %s\n' "$*"; }
die() { printf 'dev-services: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
is_local() { case "$1" in 127.0.0.1 | localhost | ::1) return 0 ;; *) return 1 ;; esac; }

# as_root CMD...: run CMD as root (directly, or through sudo), or fail saying what is missing.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif have sudo; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# apt_install PKG...: install Debian packages quietly; show apt's output only when it fails.
apt_install() {
	if [[ $EUID -ne 0 ]] && ! have sudo; then
		die "$* not installed and no root/sudo to install it; run as root: apt-get install -y $*"
	fi
	say "installing $* with apt-get (once per machine, takes a minute)"
	local log
	log=$(mktemp)
	if ! as_root apt-get update -qq >"$log" 2>&1 ||
		! as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >>"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		die "apt-get install $* failed"
	fi
	rm -f "$log"
}

# wait_until SECONDS WHAT CMD...: poll CMD every 0.2 s until it succeeds or time runs out.
wait_until() {
	local secs=$1 what=$2
	shift 2
	local i
	for ((i = 0; i < secs * 5; i++)); do
		"$@" && return 0
		sleep 0.2
	done
	die "$what not ready after ${secs}s"
}

# ---------------------------------------------------------------- PostgreSQL

pg_ready() {
	if have pg_isready; then
		pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 1
	else
		(exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null
	fi
}

pg_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

# pg_start: start (creating if needed) the local cluster that serves PG_PORT.
pg_start() {
	have pg_lsclusters || apt_install postgresql-common
	local ver name
	# Columns: Ver Cluster Port Status Owner Datadir Logfile
	read -r ver name < <(pg_lsclusters -h | awk -v p="$PG_PORT" '$3 == p { print $1, $2; exit }') || true
	if [[ -z ${ver:-} ]]; then
		ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
		name=main
		if [[ -d /etc/postgresql/$ver/$name ]]; then name=parlor; fi
		say "creating PostgreSQL $ver cluster $name on port $PG_PORT"
		as_root pg_createcluster --port "$PG_PORT" "$ver" "$name" >/dev/null
	fi
	# Debian's postinst may have just started it; it then needs only the wait below.
	if pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1 == v && $2 == n && $4 == "online" { f = 1 } END { exit !f }'; then
		return 0
	fi
	say "starting PostgreSQL $ver/$name"
	as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
		say "pg_ctlcluster start failed (see /var/log/postgresql/); waiting in case it is up anyway"
}

# pg_super: psql as a superuser, reading SQL from stdin.
pg_super() {
	local opts=(-X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres)
	if [[ $EUID -eq 0 ]] && is_local "$PG_HOST"; then
		# Peer auth on the Unix socket, as on a fresh Debian cluster.
		(cd / && runuser -u postgres -- psql "${opts[@]}")
		return
	fi
	local sql
	sql=$(cat)
	psql "${opts[@]}" -w -h "$PG_HOST" -U postgres <<<"$sql" 2>/dev/null && return 0
	psql "${opts[@]}" -w -h "$PG_HOST" <<<"$sql" 2>/dev/null && return 0
	if is_local "$PG_HOST" && have sudo; then
		(cd / && sudo -u postgres psql "${opts[@]}" <<<"$sql") && return 0
	fi
	die "cannot reach PostgreSQL at $PG_HOST:$PG_PORT as a superuser to create role and database parlor;
  as the postgres user run:  psql -c \"CREATE ROLE parlor LOGIN PASSWORD 'parlor' CREATEDB\" -c \"CREATE DATABASE parlor OWNER parlor\""
}

# pg_app_ok: the role can log in to its database and has CREATEDB.
pg_app_ok() {
	[[ $(psql "$PG_URL" -X -w -At -c 'SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user' 2>/dev/null) == t ]]
}

ensure_postgres() {
	if ! pg_ready; then
		is_local "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT is not reachable"
		pg_installed || apt_install postgresql
		# Debian's install may already have started the cluster.
		pg_ready || pg_start
		wait_until 30 "PostgreSQL at $PG_HOST:$PG_PORT" pg_ready
	fi
	have psql || apt_install postgresql-client
	pg_app_ok && return 0

	say "ensuring role parlor (CREATEDB) and database parlor"
	pg_super <<-'SQL'
		DO $$
		BEGIN
		  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'parlor') THEN
		    CREATE ROLE parlor LOGIN PASSWORD 'parlor' CREATEDB;
		  ELSE
		    ALTER ROLE parlor LOGIN PASSWORD 'parlor' CREATEDB;
		  END IF;
		END
		$$;
		SELECT 'CREATE DATABASE parlor OWNER parlor'
		WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'parlor') \gexec
		ALTER DATABASE parlor OWNER TO parlor;
	SQL
	psql "$PG_URL" -X -w -q -c 'SELECT 1' >/dev/null ||
		die "still cannot connect with $PG_URL (check pg_hba.conf allows password auth on $PG_HOST)"
	pg_app_ok || die "role parlor lacks CREATEDB"
}

# ---------------------------------------------------------------- Redis

redis_ready() {
	if have redis-cli; then
		[[ $(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
	else
		(
			exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT" || exit 1
			printf 'PING\r\n' >&3
			read -r -t 1 line <&3 && [[ $line == +PONG* ]]
		) 2>/dev/null
	fi
}

ensure_redis() {
	redis_ready && return 0
	is_local "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT is not reachable"
	if ! have redis-server; then
		apt_install redis-server
		# Debian's install may already have started it.
		redis_ready && return 0
	fi
	local dir logfile
	if [[ $EUID -eq 0 ]]; then
		dir=/var/lib/redis
		logfile=/var/log/redis/parlor-dev.log
	else
		dir=$REPO_ROOT/.data/redis
		logfile=$dir/redis.log
	fi
	mkdir -p "$dir" "$(dirname "$logfile")"
	say "starting redis-server on $REDIS_HOST:$REDIS_PORT (log $logfile)"
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
		--save "" --appendonly no --dir "$dir" --logfile "$logfile"
	wait_until 10 "Redis at $REDIS_HOST:$REDIS_PORT" redis_ready
}

# ---------------------------------------------------------------- Chromium

# ensure_chromium: the headless browser the end-to-end test drives through playwright-core
# (which never downloads browsers of its own here: Debian's package is the one).
ensure_chromium() {
	CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
	[[ -x $CHROMIUM ]] && return 0
	[[ $CHROMIUM == /usr/bin/chromium ]] || die "CHROMIUM_PATH=$CHROMIUM is not an executable"
	apt_install chromium
	[[ -x $CHROMIUM ]] || die "apt-get installed chromium but $CHROMIUM is still missing"
}

ensure_postgres
ensure_redis
# Only the test suite needs a browser: `--browser` (go tool task test, .ci/run) adds it.
if [[ ${1:-} == --browser ]]; then
	ensure_chromium
	say "ready: postgres $PG_HOST:$PG_PORT (parlor/parlor), redis $REDIS_HOST:$REDIS_PORT, chromium $CHROMIUM"
else
	say "ready: postgres $PG_HOST:$PG_PORT (parlor/parlor), redis $REDIS_HOST:$REDIS_PORT"
fi
