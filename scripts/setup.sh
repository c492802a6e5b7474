#!/bin/sh
# setup.sh: install everything raftkv needs on Debian 12 and build it in the
# source tree.  Used by both Quick start commands in README.md and by .ci/run.
#
#   ./scripts/setup.sh            build dependencies, then build raftkv/raftkv
#   ./scripts/setup.sh --test     also what `make check` needs: the real etcd
#                                 and etcdctl, python3-etcd3, python3-etcd3gw,
#                                 python3-h2, curl, clang + libFuzzer (the
#                                 fuzz targets); for tests/fault: iproute2,
#                                 nftables, libfaketime
#   ./scripts/setup.sh --bench    also what tools/bench/compare.py needs: the
#                                 real etcd, /usr/bin/time, matplotlib
#   ./scripts/setup.sh --no-build install (and run autoreconf) only
#
# Safe to run again: apt is only used when a package is missing, and the build
# is incremental.  Extra ./configure flags come from CONFIGURE_FLAGS (e.g.
# CONFIGURE_FLAGS=--enable-werror).  Runs as root, or through sudo.
set -eu

with_tests=no
with_bench=no
build=yes
for arg in "$@"; do
	case $arg in
	--test) with_tests=yes ;;
	--bench) with_bench=yes ;;
	--no-build) build=no ;;
	-h|--help) sed -n '2,17s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
	esac
done

top=$(cd "$(dirname "$0")/.." && pwd)

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		sudo -E "$@"
	fi
}

# libraft 0.22.1 comes from bookworm-backports: bookworm's own 0.15.0 has a
# Raft safety bug (see configure.ac).
BUILD_PKGS="build-essential autoconf automake pkg-config libuv1-dev liblz4-dev
	libmd-dev libjansson-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler
	libbsd-dev libcmocka-dev"
TEST_PKGS="etcd-server etcd-client python3 python3-etcd3 python3-etcd3gw python3-h2 curl
	clang libclang-rt-14-dev iproute2 nftables libfaketime"
BENCH_PKGS="etcd-server etcd-client python3 time python3-matplotlib"
RAFT_MIN=0.22.1

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

raft_ok() {
	v=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null) &&
		installed libraft-dev && dpkg --compare-versions "$v" ge "$RAFT_MIN"
}

missing=
pkgs=$BUILD_PKGS
[ $with_tests = yes ] && pkgs="$pkgs $TEST_PKGS"
[ $with_bench = yes ] && pkgs="$pkgs $BENCH_PKGS"
for p in $pkgs; do
	installed "$p" || missing="$missing $p"
done

if [ -n "$missing" ] || ! raft_ok; then
	echo "setup: installing libraft-dev >= $RAFT_MIN (bookworm-backports)$missing"
	backports=/etc/apt/sources.list.d/bookworm-backports.sources
	if [ ! -f $backports ]; then
		as_root tee $backports >/dev/null <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
	fi
	# Installing etcd-server would start Debian's etcd service on port 2379,
	# the port raftkv listens on by default; a policy-rc.d that says no keeps
	# it from starting (a policy already in place is left as it is).
	policy=/usr/sbin/policy-rc.d
	made_policy=no
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\n# setup.sh: start no service while installing\nexit 101\n' |
			as_root tee $policy >/dev/null
		as_root chmod 755 $policy
		made_policy=yes
		trap 'as_root rm -f $policy' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update
	as_root apt-get install -y -t bookworm-backports libraft-dev
	if [ -n "$missing" ]; then
		# shellcheck disable=SC2086
		as_root apt-get install -y --no-install-recommends $missing
	fi
	if [ $made_policy = yes ]; then
		as_root rm -f $policy
		trap - EXIT
	fi
fi

# Never let the packaged etcd service hold port 2379 (it is enabled at boot
# by the package, and may have been started by an earlier install).
if installed etcd-server; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
		as_root systemctl disable --now etcd.service >/dev/null 2>&1 || true
	else
		if [ -f /run/etcd.pid ] && [ -x /etc/init.d/etcd ]; then
			as_root /etc/init.d/etcd stop >/dev/null 2>&1 || true
		fi
		if command -v update-rc.d >/dev/null; then
			as_root update-rc.d etcd disable >/dev/null 2>&1 || true
		fi
	fi
fi

cd "$top"
if [ ! -x configure ]; then
	autoreconf -fi
fi
[ $build = yes ] || exit 0
if [ ! -f config.status ]; then
	# shellcheck disable=SC2086
	./configure ${CONFIGURE_FLAGS:-}
fi
make -j"$(nproc)"
