/*
 * DNS SRV: parsing replies (records, the "." target, port 0, CNAMEs,
 * malformed messages) and the RFC 2782 order across both XMPP services
 * (priority, direct TLS first on a tie, weighted random, weight 0).
 * Resolution against a real DNS server: tests/integration/test_srv.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "srv.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* a DNS reply builder */

struct msg {
	unsigned char	 b[4096];
	size_t		 len;
	int		 ancount;
};

static void
put8(struct msg *m, unsigned v)
{
	assert_true(m->len < sizeof(m->b));
	m->b[m->len++] = (unsigned char)v;
}

static void
put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8 & 0xff);
	put8(m, v & 0xff);
}

static void
put32(struct msg *m, unsigned long v)
{
	put16(m, (unsigned)(v >> 16 & 0xffff));
	put16(m, (unsigned)(v & 0xffff));
}

/* "a.test" as labels; "" or "." is the root */
static void
put_name(struct msg *m, const char *name)
{
	const char *p = name, *dot;
	size_t n;

	if (strcmp(name, ".") == 0)
		p = "";
	while (*p != '\0') {
		dot = strchr(p, '.');
		n = dot ? (size_t)(dot - p) : strlen(p);
		put8(m, (unsigned)n);
		memcpy(m->b + m->len, p, n);
		m->len += n;
		p += n;
		if (*p == '.')
			p++;
	}
	put8(m, 0);
}

static void
msg_start(struct msg *m, const char *qname)
{
	memset(m, 0, sizeof(*m));
	put16(m, 0x1234);		/* id */
	put16(m, 0x8180);		/* response, RD, RA, NOERROR */
	put16(m, 1);			/* QDCOUNT */
	put16(m, 0);			/* ANCOUNT, patched */
	put16(m, 0);
	put16(m, 0);
	put_name(m, qname);
	put16(m, 33);			/* SRV */
	put16(m, 1);			/* IN */
}

static void
msg_srv(struct msg *m, int prio, int weight, int port, const char *target)
{
	size_t rdlen_at;

	put16(m, 0xc00c);		/* the question's name */
	put16(m, 33);
	put16(m, 1);
	put32(m, 300);
	rdlen_at = m->len;
	put16(m, 0);
	put16(m, (unsigned)prio);
	put16(m, (unsigned)weight);
	put16(m, (unsigned)port);
	put_name(m, target);
	m->b[rdlen_at] = (unsigned char)((m->len - rdlen_at - 2) >> 8);
	m->b[rdlen_at + 1] = (unsigned char)((m->len - rdlen_at - 2) & 0xff);
	m->ancount++;
	m->b[6] = (unsigned char)(m->ancount >> 8);
	m->b[7] = (unsigned char)(m->ancount & 0xff);
}

static void
msg_cname(struct msg *m, const char *target)
{
	size_t rdlen_at;

	put16(m, 0xc00c);
	put16(m, 5);			/* CNAME */
	put16(m, 1);
	put32(m, 300);
	rdlen_at = m->len;
	put16(m, 0);
	put_name(m, target);
	m->b[rdlen_at + 1] = (unsigned char)(m->len - rdlen_at - 2);
	m->ancount++;
	m->b[7] = (unsigned char)m->ancount;
}

/* ------------------------------------------------------------------ */
/* parsing */

static void
test_parse_records(void **state)
{
	struct srv_target *list = NULL;
	struct msg m;
	size_t n = 0;

	msg_start(&m, "_xmpps-client._tcp.example.com");
	msg_srv(&m, 10, 5, 5223, "a.example.com");
	msg_srv(&m, 20, 0, 443, "b.example.net");
	assert_int_equal(srv_parse(m.b, m.len, 1, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].host, "a.example.com");
	assert_int_equal(list[0].priority, 10);
	assert_int_equal(list[0].weight, 5);
	assert_int_equal(list[0].port, 5223);
	assert_int_equal(list[0].direct, 1);
	assert_string_equal(srv_kind(&list[0]), "direct TLS");
	assert_string_equal(list[1].host, "b.example.net");
	assert_int_equal(list[1].port, 443);

	/* a second reply is appended, with its own kind */
	msg_start(&m, "_xmpp-client._tcp.example.com");
	msg_cname(&m, "elsewhere.example.org");
	msg_srv(&m, 5, 1, 5222, "c.example.com");
	assert_int_equal(srv_parse(m.b, m.len, 0, &list, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list[2].host, "c.example.com");
	assert_int_equal(list[2].direct, 0);
	assert_string_equal(srv_kind(&list[2]), "STARTTLS");
	srv_free_list(list, n);
}

static void
test_parse_dot(void **state)
{
	struct srv_target *list = NULL;
	struct msg m;
	size_t n = 0;

	/* the single target ".": decidedly not offered */
	msg_start(&m, "_xmpps-client._tcp.example.com");
	msg_srv(&m, 0, 0, 0, ".");
	assert_int_equal(srv_parse(m.b, m.len, 1, &list, &n), 1);
	assert_int_equal(n, 0);
	assert_null(list);

	/* "." among other records is ignored */
	msg_start(&m, "_xmpp-client._tcp.example.com");
	msg_srv(&m, 0, 0, 0, ".");
	msg_srv(&m, 10, 0, 5222, "a.example.com");
	assert_int_equal(srv_parse(m.b, m.len, 0, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].host, "a.example.com");
	srv_free_list(list, n);
}

static void
test_parse_port_zero_and_empty(void **state)
{
	struct srv_target *list = NULL;
	struct msg m;
	size_t n = 0;

	msg_start(&m, "_xmpp-client._tcp.example.com");
	msg_srv(&m, 10, 0, 0, "a.example.com");
	assert_int_equal(srv_parse(m.b, m.len, 0, &list, &n), 0);
	assert_int_equal(n, 0);

	msg_start(&m, "_xmpp-client._tcp.example.com");
	assert_int_equal(srv_parse(m.b, m.len, 0, &list, &n), 0);
	assert_int_equal(n, 0);
	assert_null(list);
}

static void
test_parse_malformed(void **state)
{
	struct srv_target *list = NULL;
	struct msg m;
	size_t n = 0, cut;

	msg_start(&m, "_xmpp-client._tcp.example.com");
	msg_srv(&m, 10, 0, 5222, "a.example.com");
	msg_srv(&m, 20, 0, 5222, "b.example.com");
	/* every truncation fails, and appends nothing */
	for (cut = 0; cut < m.len; cut++) {
		assert_int_equal(srv_parse(m.b, cut, 0, &list, &n), -1);
		assert_int_equal(n, 0);
	}
	/* rdata too short for priority, weight, port and a name */
	msg_start(&m, "_xmpp-client._tcp.example.com");
	msg_srv(&m, 10, 0, 5222, ".");
	m.b[m.len - 9] = 0;
	m.b[m.len - 8] = 5;		/* RDLENGTH 5 */
	m.len -= 2;
	assert_int_equal(srv_parse(m.b, m.len, 0, &list, &n), -1);
	assert_int_equal(n, 0);
	assert_null(list);
}

/* ------------------------------------------------------------------ */
/* ordering */

static uint32_t
rnd_zero(void *arg, uint32_t bound)
{
	return 0;
}

static uint32_t
rnd_max(void *arg, uint32_t bound)
{
	return bound;
}

/* xorshift, for the statistical tests with a fixed seed */
static uint32_t
rnd_seeded(void *arg, uint32_t bound)
{
	uint64_t *s = arg;

	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)((*s >> 11) % ((uint64_t)bound + 1));
}

struct spec {
	const char	*host;
	int		 priority, weight, direct;
};

static struct srv_target *
make(const struct spec *s, size_t n)
{
	struct srv_target *t = calloc(n, sizeof(*t));
	size_t i;

	assert_non_null(t);
	for (i = 0; i < n; i++) {
		t[i].host = strdup(s[i].host);
		t[i].port = 5222;
		t[i].priority = s[i].priority;
		t[i].weight = s[i].weight;
		t[i].direct = s[i].direct;
	}
	return t;
}

static void
expect_order(struct srv_target *t, const char *const *hosts, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		assert_string_equal(t[i].host, hosts[i]);
}

static void
test_order_priority(void **state)
{
	static const struct spec s[] = {
		{ "p30", 30, 0, 0 }, { "p10", 10, 0, 0 }, { "p20", 20, 0, 0 },
		{ "p0", 0, 0, 0 }, { "p65535", 65535, 0, 0 },
	};
	static const char *const want[] = {
		"p0", "p10", "p20", "p30", "p65535",
	};
	struct srv_target *t = make(s, NELEM(s));

	srv_order(t, NELEM(s), rnd_zero, NULL);
	expect_order(t, want, NELEM(want));
	srv_order(t, NELEM(s), NULL, NULL);	/* the system's randomness */
	expect_order(t, want, NELEM(want));
	srv_free_list(t, NELEM(s));
	srv_order(NULL, 0, NULL, NULL);
}

static void
test_order_direct_first_on_tie(void **state)
{
	/* one set ordered by priority across both services; on a tie the
	 * direct TLS targets come first */
	static const struct spec s[] = {
		{ "starttls-10", 10, 50, 0 }, { "direct-20", 20, 50, 1 },
		{ "direct-10", 10, 1, 1 }, { "starttls-5", 5, 1, 0 },
	};
	static const char *const want[] = {
		"starttls-5", "direct-10", "starttls-10", "direct-20",
	};
	struct srv_target *t = make(s, NELEM(s));
	uint64_t seed = 42;
	int round;

	for (round = 0; round < 50; round++) {
		srv_order(t, NELEM(s), rnd_seeded, &seed);
		expect_order(t, want, NELEM(want));
	}
	srv_free_list(t, NELEM(s));
}

static void
test_order_rfc2782_selection(void **state)
{
	/* with the "random" number always 0, the weight 0 entries (moved to
	 * the front) win; always the maximum: the last entry reaching the
	 * running sum wins */
	static const struct spec s[] = {
		{ "w20", 7, 20, 0 }, { "w0", 7, 0, 0 }, { "w10", 7, 10, 0 },
	};
	static const char *const low[] = { "w0", "w10", "w20" };
	static const char *const high[] = { "w10", "w20", "w0" };
	struct srv_target *t;

	/* rnd 0: the shuffle swaps 2 with 0, then 1 with 0: w0 w10 w20; w0
	 * is already in front; r 0 picks the first entry each time */
	t = make(s, NELEM(s));
	srv_order(t, NELEM(s), rnd_zero, NULL);
	expect_order(t, low, NELEM(low));
	srv_free_list(t, NELEM(s));

	/* rnd max: no shuffle; w0 to the front: w0 w20 w10; sum 30, r 30:
	 * w10 (running sum 30); then w0 w20, sum 20, r 20: w20; then w0 */
	t = make(s, NELEM(s));
	srv_order(t, NELEM(s), rnd_max, NULL);
	expect_order(t, high, NELEM(high));
	srv_free_list(t, NELEM(s));
}

static void
test_order_weights_distribution(void **state)
{
	/* the chance of coming first is (nearly) proportional to the weight:
	 * r is drawn from [0, 100], so 11/101, 30/101, 60/101 */
	static const struct spec s[] = {
		{ "w10", 1, 10, 0 }, { "w30", 1, 30, 0 }, { "w60", 1, 60, 0 },
	};
	static const double want[] = { 11.0 / 101, 30.0 / 101, 60.0 / 101 };
	const int rounds = 30000;
	int first[3] = { 0, 0, 0 }, r, k;
	struct srv_target *t;
	uint64_t seed = 0x2545f4914f6cdd1dULL;
	double f;

	for (r = 0; r < rounds; r++) {
		t = make(s, NELEM(s));
		srv_order(t, NELEM(s), r % 2 ? rnd_seeded : NULL, &seed);
		for (k = 0; k < 3; k++)
			if (strcmp(t[0].host, s[k].host) == 0)
				first[k]++;
		srv_free_list(t, NELEM(s));
	}
	for (k = 0; k < 3; k++) {
		f = (double)first[k] / rounds;
		print_message("%s first: %.3f (expected %.3f)\n", s[k].host,
		    f, want[k]);
		assert_true(f > want[k] - 0.02 && f < want[k] + 0.02);
	}
}

static void
test_order_weight_zero(void **state)
{
	/* a weight 0 entry among weighted ones is rarely first (1/101) */
	static const struct spec mixed[] = {
		{ "w0", 1, 0, 0 }, { "w100", 1, 100, 0 },
	};
	/* only weight 0: every order is possible, evenly */
	static const struct spec zeros[] = {
		{ "a", 1, 0, 1 }, { "b", 1, 0, 1 }, { "c", 1, 0, 1 },
	};
	const int rounds = 30000;
	int zero_first = 0, first[3] = { 0, 0, 0 }, r, k;
	struct srv_target *t;
	uint64_t seed = 7;
	double f;

	for (r = 0; r < rounds; r++) {
		t = make(mixed, NELEM(mixed));
		srv_order(t, NELEM(mixed), rnd_seeded, &seed);
		zero_first += strcmp(t[0].host, "w0") == 0;
		assert_string_not_equal(t[0].host, t[1].host);
		srv_free_list(t, NELEM(mixed));
	}
	f = (double)zero_first / rounds;
	print_message("weight 0 first: %.4f (expected %.4f)\n", f, 1.0 / 101);
	assert_true(f > 0.004 && f < 0.016);

	for (r = 0; r < rounds; r++) {
		t = make(zeros, NELEM(zeros));
		srv_order(t, NELEM(zeros), NULL, NULL);
		first[t[0].host[0] - 'a']++;
		srv_free_list(t, NELEM(zeros));
	}
	for (k = 0; k < 3; k++) {
		f = (double)first[k] / rounds;
		assert_true(f > 1.0 / 3 - 0.03 && f < 1.0 / 3 + 0.03);
	}
}

static void
test_order_keeps_every_entry(void **state)
{
	struct spec s[40];
	char names[40][16];
	struct srv_target *t;
	uint64_t seed = 99;
	int seen[40], i, round, idx;

	for (round = 0; round < 200; round++) {
		for (i = 0; i < 40; i++) {
			snprintf(names[i], sizeof(names[i]), "h%d", i);
			s[i].host = names[i];
			s[i].priority = (int)rnd_seeded(&seed, 3);
			s[i].weight = (int)rnd_seeded(&seed, 2) ?
			    (int)rnd_seeded(&seed, 65535) : 0;
			s[i].direct = (int)rnd_seeded(&seed, 1);
		}
		t = make(s, 40);
		srv_order(t, 40, round % 2 ? rnd_seeded : NULL, &seed);
		memset(seen, 0, sizeof(seen));
		for (i = 0; i < 40; i++) {
			idx = atoi(t[i].host + 1);
			assert_int_equal(seen[idx], 0);
			seen[idx] = 1;
			assert_int_equal(t[i].priority, s[idx].priority);
			assert_int_equal(t[i].weight, s[idx].weight);
			assert_int_equal(t[i].direct, s[idx].direct);
			if (i > 0) {
				assert_true(t[i - 1].priority <= t[i].priority);
				if (t[i - 1].priority == t[i].priority)
					assert_true(t[i - 1].direct >=
					    t[i].direct);
			}
		}
		srv_free_list(t, 40);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_records),
		cmocka_unit_test(test_parse_dot),
		cmocka_unit_test(test_parse_port_zero_and_empty),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_order_priority),
		cmocka_unit_test(test_order_direct_first_on_tie),
		cmocka_unit_test(test_order_rfc2782_selection),
		cmocka_unit_test(test_order_weights_distribution),
		cmocka_unit_test(test_order_weight_zero),
		cmocka_unit_test(test_order_keeps_every_entry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
