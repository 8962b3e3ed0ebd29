#!/bin/sh
# clawsd: `make check-debian13'.  Runs `make check' (or the make targets
# given as arguments) inside a Debian 13 (trixie) root: mbedtls 3.6, libuv
# 1.50, expat 2.7, Prosody 13, ejabberd 24.12, slixmpp 1.10.
#
# The root is made with Debian's own tools (mmdebstrap, else debootstrap)
# from the mirror the host's apt uses, and the packages are those of
# tests/deps.sh run inside it.  It is cached in $CLAWSD_DEBIAN13_ROOT
# (default /var/cache/clawsd/debian13) and rebuilt only when tests/deps.sh
# or the mirror changes.
#
# Each run happens in private mount, PID and network namespaces: /proc,
# /dev, /sys and tmpfs on /tmp and /build are mounted there only, so nothing
# shows on the host and all of it goes away with the namespace, whatever the
# outcome.  The network is a loopback of its own: the tests' servers and
# whatever listens on the host's ports never meet.  The source tree is
# copied to /build/clawsd (tmpfs) and built there: the checkout and the
# cached root are left as they were.  Needs root (as CI runs) and ip(8).
set -eu

SUITE=trixie
ROOT=${CLAWSD_DEBIAN13_ROOT:-/var/cache/clawsd/debian13}
SOURCES=/etc/apt/sources.list.d/debian.sources
PATH_IN=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() {
	echo "check-debian13: $*" >&2
	exit 1
}

# ---- inside the namespaces (the script runs itself with `unshare')

# mount_root ROOT: the root's file systems, in this namespace only.  The
# root is made a mount point of its own so that `unshare --propagation
# private' works inside it (tests/integration/test_srv.py).
mount_root() {
	mount --rbind "$1" "$1"
	mount -t proc proc "$1/proc"
	mount --rbind /dev "$1/dev"
	mount --rbind /sys "$1/sys"
	mount -t tmpfs -o mode=1777 tmpfs "$1/tmp"
	mount -t tmpfs -o mode=0755 tmpfs "$1/build"
}

in_root() {
	r=$1
	shift
	chroot "$r" /usr/bin/env -i HOME=/root PATH="$PATH_IN" LANG=C.UTF-8 \
	    TERM=dumb "$@"
}

if [ "${1:-}" = --inside-install ]; then
	r=$2
	mount_root "$r"
	cp "$3" "$r/build/deps.sh"
	in_root "$r" sh /build/deps.sh
	exit 0
fi

if [ "${1:-}" = --inside-check ]; then
	r=$2
	src=$3
	shift 3
	ip link set lo up
	mount_root "$r"
	mkdir "$r/build/clawsd"
	# The tree without what builds leave in it (the Makefile's outputs).
	tar -C "$src" --exclude=./.git --exclude=./build --exclude='./build-*' \
	    --exclude=./clawsd --exclude='__pycache__' -cf - . |
	    tar -C "$r/build/clawsd" -xf -
	in_root "$r" sh -c 'cd /build/clawsd && exec make "$@"' make "$@"
	exit 0
fi

# ---- on the host

[ "$(id -u)" -eq 0 ] || die "needs root (chroot, mount namespace)"
src=$(cd "$(dirname "$0")/.." && pwd)

# The mirrors of the host's apt (deb822 URIs: the archive, then security).
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
if [ -r "$SOURCES" ]; then
	m=$(sed -n 's/^URIs:[[:space:]]*//p' "$SOURCES" | grep -v security |
	    head -n 1)
	s=$(sed -n 's/^URIs:[[:space:]]*//p' "$SOURCES" | grep security |
	    head -n 1)
	[ -n "$m" ] && mirror=${m%% *}
	[ -n "$s" ] && security=${s%% *}
fi
lists="deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $security $SUITE-security main"

# What the root is made of: when it changes, the root is made again.
stamp=$( (printf '%s\n' "$lists"; cat "$src/tests/deps.sh") |
    sha256sum | cut -d' ' -f1)

mkdir -p "$(dirname "$ROOT")"
# One run at a time on one root.
exec 9>"$ROOT.lock"
flock 9

if [ "$(cat "$ROOT/.clawsd-stamp" 2>/dev/null || true)" != "$stamp" ]; then
	echo "check-debian13: making the Debian 13 root in $ROOT" >&2
	new=$ROOT.new
	rm -rf "$new" "$ROOT"
	# The host's tool, installed as tests/deps.sh installs the others
	# (not listed there: that list is also the root's).
	if ! command -v mmdebstrap >/dev/null &&
	    ! command -v debootstrap >/dev/null; then
		echo "check-debian13: installing mmdebstrap" >&2
		apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y \
		    --no-install-recommends mmdebstrap
	fi
	if command -v mmdebstrap >/dev/null; then
		printf '%s\n' "$lists" |
		    mmdebstrap --variant=minbase --mode=root "$SUITE" "$new" -
	elif command -v debootstrap >/dev/null; then
		debootstrap --variant=minbase "$SUITE" "$new" "$mirror"
		printf '%s\n' "$lists" >"$new/etc/apt/sources.list"
	else
		die "could not install mmdebstrap"
	fi
	mkdir -p "$new/build"
	# apt inside the root resolves the mirror as the host does.
	cp -L /etc/resolv.conf "$new/etc/resolv.conf"
	# The tests need localhost on both loopbacks.
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
	    >"$new/etc/hosts"
	unshare --mount --pid --fork --kill-child --propagation private -- \
	    sh "$0" --inside-install "$new" "$src/tests/deps.sh"
	echo "$stamp" >"$new/.clawsd-stamp"
	mv "$new" "$ROOT"
fi

[ $# -gt 0 ] || set -- check
command -v ip >/dev/null || die "needs ip(8) (apt-get install iproute2)"
exec unshare --mount --pid --net --fork --kill-child --propagation private -- \
    sh "$0" --inside-check "$ROOT" "$src" "$@"
