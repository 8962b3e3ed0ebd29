#!/bin/sh
# clawsd benchmark: make sure the Debian packages `make bench' needs are
# there (those that build clawsd, plus the libstrophe relay's and the
# orchestrator's).  Quiet when nothing is missing.  As root, installs what
# is missing; otherwise says what to install and exits 1.
set -eu

PACKAGES="gcc make pkg-config libuv1-dev libexpat1-dev libmbedtls-dev
libinih-dev libstrophe-dev libssl-dev openssl python3"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*" ok installed") ;;
	*) missing="$missing $p" ;;
	esac
done
missing=${missing# }

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "clawsd bench: missing Debian packages: $missing" >&2
	echo "run: sudo apt-get install $missing" >&2
	exit 1
fi

echo "clawsd bench: installing missing Debian packages: $missing" >&2
apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
