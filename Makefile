# clawsd: see README.md.  `make', `make check', `make demo', `make clean',
# `make install', `make uninstall'.

VERSION	 = 0.1.0
PREFIX	?= /usr/local

# Installation (DESTDIR for staging).  systemd reads units, sysusers.d and
# tmpfiles.d from /usr/local/lib as well as /usr/lib, so the default PREFIX
# works as is.  The configuration lives in /etc/clawsd whatever the PREFIX:
# the units and the built-in default path say so.
SBINDIR	 = $(PREFIX)/sbin
BINDIR	 = $(PREFIX)/bin
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
	   -Wmissing-prototypes -Wno-unused-parameter -Wformat=2
CPPFLAGS += -Icommon -Idaemon -DCLAWSD_VERSION=\"$(VERSION)\" \
	   $(shell pkg-config --cflags $(PKGS) jansson 2>/dev/null)
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
# clawsdctl: common/ and its own ctl/, nothing of the daemon.
CTL_OBJ	 = $(patsubst %.c,$(B)/%.o,$(wildcard ctl/*.c) common/buf.c common/xmlw.c)
CTL_LDLIBS = $(shell pkg-config --libs expat inih jansson 2>/dev/null)
UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

all: clawsd clawsdctl

clawsd: $(B)/daemon/main.o $(B)/libclawsd.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

clawsdctl: $(CTL_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CTL_LDLIBS)

$(B)/libclawsd.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# tests/lib: what the unit tests (and the fuzz targets, canon.c) share.
UNIT_LIB = $(B)/tests/lib/canon.o $(B)/tests/lib/tmpdir.o
$(B)/tests/%: tests/unit/%.c $(UNIT_LIB) $(B)/libclawsd.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/lib $(CFLAGS) -o $@ $< \
	    $(UNIT_LIB) $(B)/libclawsd.a -lcmocka $(LDLIBS)

# daemon/srv.c on its own, for tests/integration/test_srv.py
$(B)/tests/srvq: tests/tools/srvq.c $(B)/libclawsd.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(B)/libclawsd.a $(LDLIBS)

deps:
	@sh tests/deps.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# PYTEST_ARGS: more pytest arguments, e.g. "-k tls tests/integration/test_x.py".
PYTEST_ARGS ?= tests/integration
# The tests wait far more than they compute: PYTEST_JOBS of them at once
# (pytest-xdist, when installed; each worker starts its own servers).
# PYTEST_JOBS=1 runs them one by one (and lets -s show their output).
PYTEST_JOBS ?= 4
PYTEST_PAR = $(if $(filter-out 0 1,$(PYTEST_JOBS)),$(if $(shell $(PYTHON) \
	-c 'import xdist' 2>/dev/null && echo yes),-n $(PYTEST_JOBS)))
PYTEST = $(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_PAR)
integration: clawsd clawsdctl $(B)/tests/srvq
	$(PYTEST) $(PYTEST_ARGS)

check: deps
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) fuzz-regress
	$(MAKE) asan-check

# The same `make check' inside a Debian 13 root (tests/debian13.sh; as root):
# DEBIAN13_TARGETS="unit" for a part of it.
DEBIAN13_TARGETS ?= check
check-debian13:
	sh tests/debian13.sh $(DEBIAN13_TARGETS)

# The demo needs less than the tests: Prosody, socat, OpenSSL.
demo:
	@sh tests/deps.sh demo
	$(MAKE) --no-print-directory clawsd clawsdctl
	$(PYTHON) tests/demo.py

clean:
	rm -rf $(B) clawsd clawsdctl

# The units name /usr/local/sbin/clawsd; another PREFIX is written in.  An
# existing configuration is never replaced.
install: clawsd clawsdctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8
	install -d -m 0750 $(DESTDIR)$(CONFDIR)
	install -m 0755 clawsd $(DESTDIR)$(SBINDIR)/clawsd
	install -m 0755 clawsdctl $(DESTDIR)$(BINDIR)/clawsdctl
	set -e; for u in $(UNITS); do \
		sed 's|/usr/local/sbin/clawsd|$(SBINDIR)/clawsd|g' systemd/$$u \
		    >$(DESTDIR)$(UNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; \
	done
	install -m 0644 systemd/clawsd.sysusers $(DESTDIR)$(SYSUSERSDIR)/clawsd.conf
	install -m 0644 systemd/clawsd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/clawsd.conf
	install -m 0644 daemon/clawsd.8 $(DESTDIR)$(MANDIR)/man8/clawsd.8
	install -m 0644 ctl/clawsdctl.1 $(DESTDIR)$(MANDIR)/man1/clawsdctl.1
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
	rm -f $(DESTDIR)$(BINDIR)/clawsdctl
	rm -f $(DESTDIR)$(MANDIR)/man1/clawsdctl.1
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/clawsd.conf
	rm -f $(DESTDIR)$(TMPFILESDIR)/clawsd.conf
	rm -f $(DESTDIR)$(MANDIR)/man8/clawsd.8
	rm -f $(DESTDIR)$(MANDIR)/man5/clawsd.conf.5
	@echo "kept $(DESTDIR)$(CONFDIR) (configuration and passwords)"

.PHONY: all deps unit integration check check-debian13 demo clean install \
	uninstall

# ---- hostile input: fuzzing, sanitizers, valgrind (see tests/fuzz/README)
#
# `make fuzz' runs each libFuzzer target for FUZZ_SECONDS (new inputs go to
# build-fuzz/corpus, crashes to build-fuzz/artifacts); `make fuzz-regress'
# (part of `make check') runs each over its seed corpus in tests/fuzz/corpus.
# `make asan-check' (part of `make check') builds the daemon and the unit
# tests with ASan+UBSan in build-asan and runs the unit and integration
# tests with them; `make valgrind' runs the integration suite with the
# daemon under memcheck.
FUZZ_CC	 = clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS ?=
FZ	 = build-fuzz
FUZZ_TARGETS = fuzz_frame fuzz_stream fuzz_scram fuzz_conf
FUZZ_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	   -fno-sanitize-recover=all -std=c11 -D_GNU_SOURCE -Wall -Wextra \
	   -Wno-unused-parameter
FUZZ_OBJ = $(patsubst %.c,$(FZ)/%.o,$(COMMON_SRC) $(DAEMON_SRC))
FUZZ_BIN = $(addprefix $(FZ)/,$(FUZZ_TARGETS))
BA	 = build-asan
ASAN_CC	 = clang
ASAN_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	   -fno-sanitize-recover=all
ASAN_UNIT_BIN = $(patsubst $(B)/%,$(BA)/%,$(UNIT_BIN))
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1 \
	   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The ASan pass runs the integration suite against one server (the daemon's
# memory handling does not depend on which; the plain pass covers both):
# ASAN_SERVERS=prosody,ejabberd for both.  ASAN_PYTEST_ARGS: more pytest
# arguments, e.g. -x.
ASAN_SERVERS ?= prosody
ASAN_PYTEST_ARGS ?=
VALGRIND = valgrind --leak-check=full --errors-for-leak-kinds=definite \
	   --error-exitcode=99 -q
VALGRIND_PYTEST_ARGS ?=

# The binaries inside a build folder (the ASan ones: build-asan/clawsd...).
$(B)/clawsd: $(B)/daemon/main.o $(B)/libclawsd.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/clawsdctl: $(CTL_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CTL_LDLIBS)

$(FZ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -Itests/lib $(FUZZ_CFLAGS) \
	    -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FZ)/libclawsd.a: $(FUZZ_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BIN): $(FZ)/%: $(FZ)/tests/fuzz/%.o $(FZ)/tests/lib/canon.o \
	    $(FZ)/libclawsd.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: $(FUZZ_BIN)
	@mkdir -p $(FZ)/artifacts
	@set -e; for t in $(FUZZ_TARGETS); do \
	    case $$t in fuzz_frame|fuzz_stream) d=xml;; *) d=$${t#fuzz_};; esac; \
	    mkdir -p $(FZ)/corpus/$$t; \
	    echo "== $$t: $(FUZZ_SECONDS) s (log: $(FZ)/$$t.log)"; \
	    if ! $(FZ)/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -print_final_stats=1 -dict=tests/fuzz/$$d.dict \
	        -artifact_prefix=$(FZ)/artifacts/$$t- $(FUZZ_FLAGS) \
	        $(FZ)/corpus/$$t tests/fuzz/corpus/$$t >$(FZ)/$$t.log 2>&1; \
	    then tail -60 $(FZ)/$$t.log; \
	        echo "$$t: CRASH, reproducer in $(FZ)/artifacts/"; exit 1; fi; \
	    grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' $(FZ)/$$t.log; \
	done

fuzz-regress: $(FUZZ_BIN)
	@set -e; for t in $(FUZZ_TARGETS); do \
	    echo "== $$t over tests/fuzz/corpus/$$t ($$(ls tests/fuzz/corpus/$$t | wc -l) inputs)"; \
	    if ! $(FZ)/$$t -runs=0 -timeout=10 -artifact_prefix=$(FZ)/$$t- \
	        tests/fuzz/corpus/$$t >$(FZ)/$$t.regress.log 2>&1; \
	    then tail -60 $(FZ)/$$t.regress.log; exit 1; fi; \
	done

asan-build:
	CFLAGS="$(ASAN_CFLAGS)" $(MAKE) --no-print-directory B=$(BA) \
	    CC=$(ASAN_CC) $(BA)/clawsd $(BA)/clawsdctl $(ASAN_UNIT_BIN)

asan-check: asan-build
	@set -e; for t in $(ASAN_UNIT_BIN); do \
	    echo "== $$t (ASan+UBSan)"; $(ASAN_ENV) $$t; done
	$(ASAN_ENV) CLAWSD_BIN=$(CURDIR)/$(BA)/clawsd \
	    CLAWSDCTL_BIN=$(CURDIR)/$(BA)/clawsdctl \
	    CLAWSD_TEST_SERVERS=$(ASAN_SERVERS) $(PYTEST) $(ASAN_PYTEST_ARGS) \
	    tests/integration

# Under valgrind the daemon computes more than the tests wait: one by one.
valgrind: clawsd
	CLAWSD_WRAPPER="$(VALGRIND)" $(PYTHON) -m pytest -q -p no:cacheprovider \
	    $(VALGRIND_PYTEST_ARGS) tests/integration

clean: clean-hostile
clean-hostile:
	rm -rf $(FZ) $(BA)

.PHONY: fuzz fuzz-build fuzz-regress asan-build asan-check valgrind \
	clean-hostile

-include $(shell find $(FZ) -name '*.d' 2>/dev/null)

# ---- benchmark (tests/bench/README.md; not part of `make check')
#
# `make bench' installs what it needs (tests/bench/deps.sh), builds clawsd
# and the tools into $(B)/bench, and prints one table: clawsd and a
# libstrophe relay side by side, the expat and mbedtls limits and the
# single-thread limit they make, the harness's ceiling.
# BENCH_N=50000 for a quick run; other knobs in tests/bench/bench.py.
bench:
	@sh tests/bench/deps.sh
	$(MAKE) --no-print-directory clawsd
	$(MAKE) --no-print-directory -f tests/bench/bench.mk B=$(B) bench-tools
	$(PYTHON) tests/bench/bench.py
	$(PYTHON) tests/bench/rtt.py

# The round-trip row alone (tests/bench/rtt.py: real Prosody and ejabberd
# behind a 50 ms proxy, about 80 s); in the Debian 13 root:
# sh tests/debian13.sh bench-rtt.
bench-rtt: clawsd
	$(PYTHON) tests/bench/rtt.py

.PHONY: bench bench-rtt

-include $(shell find $(B) -name '*.d' 2>/dev/null)
