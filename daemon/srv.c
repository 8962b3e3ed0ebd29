#include <sys/types.h>
#include <sys/random.h>
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "srv.h"

#define ANSWER_MAX	65536		/* res_nquery goes TCP when truncated */
#define ERR_MAX		(NS_MAXDNAME + 128)

static const char *const service[2] = {
	"_xmpps-client._tcp.",		/* direct TLS first, see srv.h */
	"_xmpp-client._tcp.",
};

enum lookup_status {
	L_FOUND,			/* an answer; maybe no usable target */
	L_NONE,				/* NXDOMAIN or no SRV data */
	L_DOT,				/* the single target "." */
	L_FAILED,
};

/* One service, looked up in a thread of the pool. */
struct lookup {
	uv_work_t		 work;
	struct srv_query	*q;
	int			 direct;
	char			 name[NS_MAXDNAME];
	/* written by the thread, read on the loop after it */
	enum lookup_status	 status;
	struct srv_target	*list;
	size_t			 n;
	char			 err[ERR_MAX];
};

struct srv_query {
	srv_cb		*cb;
	void		*arg;
	int		 pending;	/* lookups queued and not done */
	int		 cancelled;
	char		*domain;
	struct lookup	 lk[2];
};

void
srv_free_list(struct srv_target *list, size_t n)
{
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; i < n; i++)
		free(list[i].host);
	free(list);
}

const char *
srv_kind(const struct srv_target *t)
{
	return t->direct ? "direct TLS" : "STARTTLS";
}

/* ------------------------------------------------------------------ */
/* parsing */

static unsigned
get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

int
srv_parse(const unsigned char *buf, size_t len, int direct,
    struct srv_target **list, size_t *n)
{
	struct srv_target *add = NULL, *grown;
	size_t nadd = 0, i;
	int count, records = 0, dots = 0, rc = 0;
	ns_msg msg;
	ns_rr rr;
	char name[NS_MAXDNAME];
	const unsigned char *rd;

	if (len > INT32_MAX || ns_initparse(buf, (int)len, &msg) < 0)
		return -1;
	count = ns_msg_count(msg, ns_s_an);
	for (i = 0; i < (size_t)count; i++) {
		if (ns_parserr(&msg, ns_s_an, (int)i, &rr) < 0) {
			rc = -1;
			goto out;
		}
		if (ns_rr_type(rr) != ns_t_srv || ns_rr_class(rr) != ns_c_in)
			continue;	/* e.g. the CNAME that led here */
		if (ns_rr_rdlen(rr) < 7) {
			rc = -1;
			goto out;
		}
		rd = ns_rr_rdata(rr);
		if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rd + 6, name,
		    sizeof(name)) < 0) {
			rc = -1;
			goto out;
		}
		records++;
		if (name[0] == '\0' || strcmp(name, ".") == 0) {
			dots++;
			continue;
		}
		if (get16(rd + 4) == 0)
			continue;
		add = xrealloc(add, (nadd + 1) * sizeof(*add));
		add[nadd].host = xstrdup(name);
		add[nadd].priority = (int)get16(rd);
		add[nadd].weight = (int)get16(rd + 2);
		add[nadd].port = (int)get16(rd + 4);
		add[nadd].direct = direct;
		nadd++;
	}
	if (records == 1 && dots == 1) {
		rc = 1;
		goto out;
	}
	if (nadd > 0) {
		grown = xrealloc(*list, (*n + nadd) * sizeof(**list));
		memcpy(grown + *n, add, nadd * sizeof(*add));
		*list = grown;
		*n += nadd;
		free(add);
		return 0;
	}
out:
	srv_free_list(add, nadd);
	return rc;
}

/* ------------------------------------------------------------------ */
/* ordering */

/* splitmix64, seeded from the kernel */
static uint64_t
next64(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint32_t
sys_random(void *arg, uint32_t bound)
{
	uint64_t *s = arg, range, limit, x;

	range = (uint64_t)bound + 1;
	limit = (UINT64_C(1) << 32) / range * range;
	do
		x = next64(s) >> 32;
	while (x >= limit);
	return (uint32_t)(x % range);
}

static int
cmp_group(const void *a, const void *b)
{
	const struct srv_target *x = a, *y = b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return y->direct - x->direct;
}

/* RFC 2782's weighted selection over t[0..n), one priority and kind. */
static void
order_group(struct srv_target *t, size_t n,
    uint32_t (*rnd)(void *, uint32_t), void *arg)
{
	struct srv_target tmp;
	uint64_t sum, run;
	uint32_t r;
	size_t i, k, z;

	/* any order (a random one, so that equal weights share the load) */
	for (i = n; i > 1; i--) {
		k = rnd(arg, (uint32_t)(i - 1));
		tmp = t[i - 1];
		t[i - 1] = t[k];
		t[k] = tmp;
	}
	/* ... except that the weight 0 entries come first */
	for (i = z = 0; i < n; i++) {
		if (t[i].weight != 0)
			continue;
		tmp = t[i];
		memmove(t + z + 1, t + z, (i - z) * sizeof(*t));
		t[z++] = tmp;
	}
	for (i = 0; i + 1 < n; i++) {
		for (sum = 0, k = i; k < n; k++)
			sum += (uint64_t)t[k].weight;
		r = rnd(arg, sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum);
		for (run = 0, k = i; k < n; k++) {
			run += (uint64_t)t[k].weight;
			if (run >= r)
				break;
		}
		if (k == n)
			k = n - 1;
		/* to the front, the others keeping their order */
		tmp = t[k];
		memmove(t + i + 1, t + i, (k - i) * sizeof(*t));
		t[i] = tmp;
	}
}

void
srv_order(struct srv_target *t, size_t n, uint32_t (*rnd)(void *, uint32_t),
    void *arg)
{
	uint64_t seed;
	size_t i, j;

	if (n == 0)
		return;
	if (rnd == NULL) {
		if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) !=
		    (ssize_t)sizeof(seed))
			seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32 ^
			    (uint64_t)(uintptr_t)t;
		rnd = sys_random;
		arg = &seed;
	}
	qsort(t, n, sizeof(*t), cmp_group);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && t[j].priority == t[i].priority &&
		    t[j].direct == t[i].direct; j++)
			;
		order_group(t + i, j - i, rnd, arg);
	}
}

/* ------------------------------------------------------------------ */
/* lookups in the thread pool */

static void
lookup_work(uv_work_t *w)
{
	struct lookup *lk = w->data;
	struct __res_state rs;
	unsigned char *ans;
	int len, rc;

	memset(&rs, 0, sizeof(rs));
	if (res_ninit(&rs) != 0) {
		lk->status = L_FAILED;
		snprintf(lk->err, sizeof(lk->err), "DNS: SRV %s: cannot "
		    "read the resolver configuration", lk->name);
		return;
	}
	ans = xmalloc(ANSWER_MAX);
	len = res_nquery(&rs, lk->name, ns_c_in, ns_t_srv, ans, ANSWER_MAX);
	if (len < 0) {
		switch (rs.res_h_errno) {
		case HOST_NOT_FOUND:
		case NO_DATA:
			lk->status = L_NONE;
			break;
		case TRY_AGAIN:
			lk->status = L_FAILED;
			snprintf(lk->err, sizeof(lk->err), "DNS: SRV %s: no "
			    "answer (timeout or server failure)", lk->name);
			break;
		default:
			lk->status = L_FAILED;
			snprintf(lk->err, sizeof(lk->err), "DNS: SRV %s: "
			    "lookup failed (refused or unusable answer)",
			    lk->name);
			break;
		}
	} else {
		if (len > ANSWER_MAX)
			len = ANSWER_MAX;
		rc = srv_parse(ans, (size_t)len, lk->direct, &lk->list,
		    &lk->n);
		if (rc < 0) {
			lk->status = L_FAILED;
			snprintf(lk->err, sizeof(lk->err), "DNS: SRV %s: "
			    "malformed answer", lk->name);
		} else
			lk->status = rc == 1 ? L_DOT : L_FOUND;
	}
	free(ans);
	res_nclose(&rs);
}

static void
finish(struct srv_query *q)
{
	struct lookup *d = &q->lk[0], *s = &q->lk[1];
	struct srv_target *list = NULL;
	enum srv_status st;
	char err[2 * ERR_MAX + 4];
	size_t n, i;

	err[0] = '\0';
	if (d->err[0] != '\0' && s->err[0] != '\0')
		snprintf(err, sizeof(err), "%s; %s", d->err, s->err);
	else
		snprintf(err, sizeof(err), "%s", d->err[0] ? d->err : s->err);
	n = d->n + s->n;
	if (n > 0) {
		st = SRV_FOUND;
		list = xmalloc(n * sizeof(*list));
		/* memcpy(3) wants real pointers even for 0 bytes. */
		if (d->n > 0)
			memcpy(list, d->list, d->n * sizeof(*list));
		if (s->n > 0)
			memcpy(list + d->n, s->list, s->n * sizeof(*list));
		free(d->list);
		free(s->list);
		d->list = s->list = NULL;
		d->n = s->n = 0;
		srv_order(list, n, NULL, NULL);
	} else if (s->status == L_DOT &&
	    (d->status == L_DOT || d->status == L_NONE ||
	    d->status == L_FOUND)) {
		st = SRV_NOT_OFFERED;
		snprintf(err, sizeof(err), "DNS: SRV %s%s: \".\": the domain "
		    "offers no XMPP client service", service[1], q->domain);
	} else if (d->status == L_FAILED || s->status == L_FAILED)
		st = SRV_FAILED;
	else
		st = SRV_NONE;
	for (i = 0; i < n; i++)
		log_debug("SRV %s: %zu. %s port %d, %s, priority %d, "
		    "weight %d", q->domain, i + 1, list[i].host, list[i].port,
		    srv_kind(&list[i]), list[i].priority, list[i].weight);
	q->cb(q->arg, st, list, n, err[0] ? err : NULL);
}

static void
lookup_done(uv_work_t *w, int status)
{
	struct lookup *lk = w->data;
	struct srv_query *q = lk->q;
	int i;

	if (status < 0 && lk->status != L_FAILED) {
		lk->status = L_FAILED;
		snprintf(lk->err, sizeof(lk->err), "DNS: SRV %s: %s",
		    lk->name, uv_strerror(status));
	}
	if (--q->pending > 0)
		return;
	if (!q->cancelled)
		finish(q);
	for (i = 0; i < 2; i++)
		srv_free_list(q->lk[i].list, q->lk[i].n);
	free(q->domain);
	free(q);
}

struct srv_query *
srv_resolve(uv_loop_t *loop, const char *domain, srv_cb *cb, void *arg)
{
	struct srv_query *q;
	struct lookup *lk;
	int i, rc;

	if (domain == NULL || domain[0] == '\0' ||
	    strlen(domain) + strlen(service[0]) >= sizeof(q->lk[0].name)) {
		log_error("DNS: SRV: unusable domain name");
		return NULL;
	}
	q = xcalloc(1, sizeof(*q));
	q->cb = cb;
	q->arg = arg;
	q->domain = xstrdup(domain);
	for (i = 0; i < 2; i++) {
		lk = &q->lk[i];
		lk->q = q;
		lk->direct = i == 0;
		lk->work.data = lk;
		snprintf(lk->name, sizeof(lk->name), "%s%s", service[i],
		    domain);
	}
	for (i = 0; i < 2; i++) {
		rc = uv_queue_work(loop, &q->lk[i].work, lookup_work,
		    lookup_done);
		if (rc < 0) {
			log_error("DNS: SRV: cannot queue the lookup: %s",
			    uv_strerror(rc));
			if (q->pending == 0) {
				free(q->domain);
				free(q);
			} else
				q->cancelled = 1;	/* freed when done */
			return NULL;
		}
		q->pending++;
	}
	return q;
}

void
srv_cancel(struct srv_query *q)
{
	int i;

	if (q == NULL)
		return;
	q->cancelled = 1;
	/*
	 * A lookup not started yet never will be; one under way (UV_EBUSY)
	 * ends and sees `cancelled'.  Either way lookup_done frees it.
	 */
	for (i = 0; i < 2; i++)
		(void)uv_cancel((uv_req_t *)&q->lk[i].work);
}
