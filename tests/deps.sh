#!/bin/sh
# clawsd: make sure the Debian packages needed to build and test are there.
# Quiet when nothing is missing.  As root, installs what is missing; otherwise
# says what to install and exits 1.  Run by `make deps'; with the argument
# `demo', by `make demo'; with `bench', by tests/bench/deps.sh for `make bench'.
set -eu

label=clawsd

# clang, libclang-rt-dev: the libFuzzer targets and the ASan+UBSan build
# (`make check'); valgrind: `make valgrind'.
# libjansson-dev: clawsdctl's JSON output.
# prosody-modules: mod_sasl2, mod_sasl2_bind2, mod_sasl2_fast, mod_sasl2_sm
# for the SASL2/Bind2/FAST tests against Prosody 13 (Debian 13).
# python3-pytest-xdist: the integration suite runs its tests in parallel.
# systemd: systemd-analyze, systemd-sysusers and systemd-tmpfiles check the
# units (no running systemd needed); mandoc lints the man pages.
PACKAGES="gcc make pkg-config libuv1-dev libexpat1-dev libmbedtls-dev
libinih-dev libjansson-dev libcmocka-dev prosody prosody-modules ejabberd dnsmasq-base python3
python3-slixmpp python3-pytest python3-pytest-xdist openssl socat
ca-certificates systemd mandoc clang libclang-rt-dev valgrind"

# `make demo': what builds clawsd and clawsdctl, and what the demo runs.
if [ "${1:-}" = demo ]; then
	label="clawsd demo"
	PACKAGES="gcc make pkg-config libuv1-dev libexpat1-dev libmbedtls-dev
libinih-dev libjansson-dev prosody socat openssl ca-certificates python3"
fi

# `make bench': what builds clawsd, the libstrophe relay (libstrophe with
# OpenSSL) and the orchestrator's certificates.
if [ "${1:-}" = bench ]; then
	label="clawsd bench"
	PACKAGES="gcc make pkg-config libuv1-dev libexpat1-dev libmbedtls-dev
libinih-dev libstrophe-dev libssl-dev openssl python3"
fi

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
	echo "$label: missing Debian packages: $missing" >&2
	echo "run: sudo apt-get install $missing" >&2
	exit 1
fi

echo "$label: installing missing Debian packages: $missing" >&2

# Installing prosody or ejabberd would start its system service (on
# 0.0.0.0:5222...; ejabberd also epmd).  dnsmasq-base is the bare binary,
# without the dnsmasq service.
# Forbid service starts while installing, with a policy-rc.d of our own;
# remove it afterwards only if we created it.
policy=/usr/sbin/policy-rc.d
created_policy=no
cleanup() {
	if [ "$created_policy" = yes ]; then
		rm -f "$policy"
	fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# temporary, from clawsd tests/deps.sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	created_policy=yes
fi

apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing

# Their postinst also enables the services for the next boot, where they
# would listen on every address (ejabberd: web admin and MQTT too).  The
# test suite runs its own instances on loopback: disable what we installed.
for s in prosody ejabberd; do
	case " $missing " in
	*" $s "*) ;;
	*) continue ;;
	esac
	# update-rc.d disables both the init script and the systemd unit
	update-rc.d "$s" disable >/dev/null 2>&1 || true
	echo "clawsd: installed $s for the tests, its system service disabled" \
	    "(systemctl enable $s to use it)" >&2
done
