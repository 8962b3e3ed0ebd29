# The benchmark's tools: included by the top Makefile (`make bench').
# Built into $(B)/bench; nothing here is part of `make check'.

BENCH_DIR	 = tests/bench
BENCH_B		 = $(B)/bench
BENCH_TOOLS	 = xmppd sub pub strophe_relay expat_limit tls_limit pbkdf2_limit
BENCH_BIN	 = $(addprefix $(BENCH_B)/,$(BENCH_TOOLS))
BENCH_CFLAGS	 = -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow \
		   -Wstrict-prototypes -Wmissing-prototypes -Idaemon
ifneq ($(shell grep -s XML_SetReparseDeferralEnabled /usr/include/expat.h),)
BENCH_CFLAGS	+= -DHAVE_XML_REPARSE_DEFERRAL
endif

$(BENCH_B)/xmppd: LIBS = -lexpat -lmbedtls -lmbedx509 -lmbedcrypto
$(BENCH_B)/strophe_relay: LIBS = \
	$(shell pkg-config --libs libstrophe 2>/dev/null || echo -lstrophe) \
	-lexpat
$(BENCH_B)/expat_limit: LIBS = -lexpat
$(BENCH_B)/tls_limit: LIBS = -lmbedcrypto
$(BENCH_B)/pbkdf2_limit: LIBS = -lmbedcrypto

$(BENCH_B)/%: $(BENCH_DIR)/%.c $(BENCH_DIR)/stanza.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(LIBS)

bench-tools: $(BENCH_BIN)

.PHONY: bench-tools
