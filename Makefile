# clawsd: see README.md.  `make', `make check', `make demo', `make clean'.

VERSION	 = 0.1.0
PREFIX	?= /usr/local

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

deps:
	@sh tests/deps.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: clawsd
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

check: deps
	$(MAKE) unit
	$(MAKE) integration

demo: deps clawsd
	$(PYTHON) tests/demo.py

clean:
	rm -rf $(B) clawsd

.PHONY: all deps unit integration check demo clean

-include $(shell find $(B) -name '*.d' 2>/dev/null)
