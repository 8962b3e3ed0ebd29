# clawsd: see README.md.  `make', `make check', `make demo', `make clean',
# `make install', `make uninstall'.

VERSION	 = 0.1.0
PREFIX	?= /usr/local

# Installation (DESTDIR for staging).  systemd reads units, sysusers.d and
# tmpfiles.d from /usr/local/lib as well as /usr/lib, so the default PREFIX
# works as is.  The configuration lives in /etc/clawsd whatever the PREFIX:
# the units and the built-in default path say so.
SBINDIR	 = $(PREFIX)/sbin
MANDIR	 = $(PREFIX)/share/man
UNITDIR	 = $(PREFIX)/lib/systemd/system
SYSUSERSDIR = $(PREFIX)/lib/sysusers.d
TMPFILESDIR = $(PREFIX)/lib/tmpfiles.d
CONFDIR	 = /etc/clawsd
UNITS	 = clawsd.service clawsd@.service clawsd.socket clawsd@.socket

CC	?= cc
PYTHON	 = /usr/bin/python3
PKGS	 = libuv expat inih
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes \
	   -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS += -Icommon -Idaemon -DCLAWSD_VERSION=\"$(VERSION)\" \
	   $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Expat 2.6 (and Debian's 2.5 with the CVE-2023-52425 fix) may hold back
# the end of an element until more input comes: the daemon turns that off.
ifneq ($(shell grep -s XML_SetReparseDeferralEnabled /usr/include/expat.h),)
CPPFLAGS += -DHAVE_XML_REPARSE_DEFERRAL
endif
LDLIBS	+= $(shell pkg-config --libs $(PKGS) 2>/dev/null) \
	   -lmbedtls -lmbedx509 -lmbedcrypto -lresolv

B	 = build
COMMON_SRC = $(wildcard common/*.c)
DAEMON_SRC = $(filter-out daemon/main.c,$(wildcard daemon/*.c))
LIB_OBJ	 = $(patsubst %.c,$(B)/%.o,$(COMMON_SRC) $(DAEMON_SRC))
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

all: clawsd

clawsd: $(B)/daemon/main.o $(B)/libclawsd.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/libclawsd.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(B)/libclawsd.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libclawsd.a \
	    -lcmocka $(LDLIBS)

# daemon/srv.c on its own, for tests/integration/test_srv.py
$(B)/tests/srvq: tests/tools/srvq.c $(B)/libclawsd.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libclawsd.a $(LDLIBS)

deps:
	@sh tests/deps.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: clawsd $(B)/tests/srvq
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

check: deps
	$(MAKE) unit
	$(MAKE) integration

demo: deps clawsd
	$(PYTHON) tests/demo.py

clean:
	rm -rf $(B) clawsd

# The units name /usr/local/sbin/clawsd; another PREFIX is written in.  An
# existing configuration is never replaced.
install: clawsd
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -d -m 0750 $(DESTDIR)$(CONFDIR)
	install -m 0755 clawsd $(DESTDIR)$(SBINDIR)/clawsd
	set -e; for u in $(UNITS); do \
		sed 's|/usr/local/sbin/clawsd|$(SBINDIR)/clawsd|g' systemd/$$u \
		    >$(DESTDIR)$(UNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; \
	done
	install -m 0644 systemd/clawsd.sysusers $(DESTDIR)$(SYSUSERSDIR)/clawsd.conf
	install -m 0644 systemd/clawsd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/clawsd.conf
	install -m 0644 daemon/clawsd.8 $(DESTDIR)$(MANDIR)/man8/clawsd.8
	install -m 0644 conf/clawsd.conf.5 $(DESTDIR)$(MANDIR)/man5/clawsd.conf.5
	@if [ -e $(DESTDIR)$(CONFDIR)/clawsd.conf ]; then \
		echo "kept the existing $(DESTDIR)$(CONFDIR)/clawsd.conf"; \
	else \
		echo "install -m 0640 conf/clawsd.conf $(DESTDIR)$(CONFDIR)/clawsd.conf"; \
		install -m 0640 conf/clawsd.conf $(DESTDIR)$(CONFDIR)/clawsd.conf; \
	fi

# The configuration and passwords in $(CONFDIR) are the administrator's: kept.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/clawsd
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/clawsd.conf
	rm -f $(DESTDIR)$(TMPFILESDIR)/clawsd.conf
	rm -f $(DESTDIR)$(MANDIR)/man8/clawsd.8
	rm -f $(DESTDIR)$(MANDIR)/man5/clawsd.conf.5
	@echo "kept $(DESTDIR)$(CONFDIR) (configuration and passwords)"

.PHONY: all deps unit integration check demo clean install uninstall

# ---- benchmark (tests/bench/README.md; not part of `make check')
#
# `make bench' installs what it needs (tests/bench/deps.sh), builds clawsd
# and the tools into $(B)/bench, and prints one table: clawsd and a
# libstrophe relay side by side, the expat limit, the harness's ceiling.
# BENCH_N=50000 for a quick run; other knobs in tests/bench/bench.py.
bench:
	@sh tests/bench/deps.sh
	$(MAKE) --no-print-directory clawsd
	$(MAKE) --no-print-directory -f tests/bench/bench.mk B=$(B) bench-tools
	$(PYTHON) tests/bench/bench.py

.PHONY: bench

-include $(shell find $(B) -name '*.d' 2>/dev/null)
