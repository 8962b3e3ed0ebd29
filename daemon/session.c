#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include "buf.h"
#include "link.h"
#include "log.h"
#include "sasl.h"
#include "session.h"
#include "sm.h"
#include "squeue.h"
#include "srv.h"
#include "stream.h"
#include "xmlw.h"

#define NS_TLS		"urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL		"urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND		"urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION	"urn:ietf:params:xml:ns:xmpp-session"
#define NS_STANZAS	"urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_STREAM_ERR	"urn:ietf:params:xml:ns:xmpp-streams"
#define NS_PING		"urn:xmpp:ping"
#define NS_SM		"urn:xmpp:sm:3"
#define NS_SASL_CB	"urn:xmpp:sasl-cb:0"
#define NS_LIMITS	"urn:xmpp:stream-limits:0"

/*
 * Stanzas wait in the queue while this much is still unsent on the link.
 * Enough for the loop to frame the next megabytes while the kernel takes
 * the previous ones: at 1 MiB the clients were paused and resumed so
 * often that client -> server over TLS lost a fifth.
 */
#define LINK_HIGH_WATER	(1u << 22)
/* How long a shutdown waits for the server to close its stream. */
#define STOP_TIMEOUT_MS	3000

/* The seed's states (snatch's claws_xmpp), in the order a session takes. */
enum state {
	ST_DISCONNECTED,
	ST_RETRYING,
	ST_CONNECTING,		/* DNS, TCP, direct TLS */
	ST_CONNECTED,		/* TCP up, stream not yet opened */
	ST_STREAM_INIT,		/* stream header sent, STARTTLS */
	ST_AUTHENTICATE,	/* SASL */
	ST_BIND,		/* restarted stream, waiting for features */
	ST_BINDING,		/* bind (and session) requests sent */
	ST_BINDED,		/* the session is up */
};

static const char *const state_names[] = {
	"Disconnected", "Retrying", "Connecting", "Connected", "Stream Init",
	"Authenticate", "Bind", "Binding", "Binded",
};

struct session {
	uv_loop_t		*loop;
	const struct session_cb	*cb;
	void			*arg;
	const struct conf	*conf;
	struct link		*link;
	struct stream		*stream;
	enum state		 state;
	uv_timer_t		 handshake;	/* connect_timeout */
	uv_timer_t		 retry;
	uv_timer_t		 stop_timer;
	uv_timer_t		 ping_timer;
	uint64_t		 last_rx;	/* loop time of the last read */
	uint64_t		 ping_sent;	/* 0: no ping outstanding */
	uint64_t		 delay_ms;	/* next wait in Retrying */
	unsigned		 seed;		/* jitter only, not secrets */
	char			*redirect;	/* see-other-host, for one try */
	struct srv_query	*srvq;		/* SRV lookup under way */
	struct srv_target	*targets;	/* from SRV, tried in order */
	size_t			 ntargets;
	size_t			 next_target;
	int			 resolved;	/* SRV done for this round */
	int			 tried_domain;	/* the last resort is used */
	int			 sm_offered;
	size_t			 server_max;	/* XEP-0478 max-bytes, 0: none */
	int			 can_bind;
	struct sasl		 sasl;
	struct sasl_cache	 sasl_cache;	/* SaltedPassword for reconnects */
	int			 scram_pinned;	/* no PLAIN once SCRAM was used */
	int			 session_required;
	char			*jid;		/* bound full JID */
	char			*bind_id;
	char			*session_id;
	char			*ping_id;
	unsigned long		 next_id;
	struct squeue		 queue;		/* from clients, not yet sent */
	struct sm		 sm;
	int			 stopping;
	int			 closing;	/* our </stream:stream> is out */
	int			 congested;	/* clients are paused */
	int			 stopped;
	int			 open_timers;	/* not closed yet, of 4 */
	struct buf		 scratch;
};

static void connect_now(struct session *);

const char *
session_state(const struct session *s)
{
	return state_names[s->state];
}

/*
 * Every change of state happens here, and is logged with its detail
 * ("as JID", "in 6 s: reason"), which also goes to the state callback.
 */
static void
set_state(struct session *s, enum state next, const char *detail)
{
	if (s->state == next)
		return;
	log_debug("state: %s -> %s%s%s", state_names[s->state],
	    state_names[next], detail ? ": " : "", detail ? detail : "");
	s->state = next;
	if (s->cb->state != NULL)
		s->cb->state(s->arg, state_names[next], detail);
}

static void
send_raw(struct session *s, const char *data, size_t len)
{
	link_write(s->link, data, len);
}

static void
send_buf(struct session *s, struct buf *b)
{
	send_raw(s, b->data, b->len);
	b->len = 0;
}

#define SM_R	"<r xmlns='" NS_SM "'/>"

/*
 * One ack request in flight at a time: under load that is one per round
 * trip, whatever the number of stanzas, and none when idle.
 */
static void
request_ack(struct session *s)
{
	if (!s->sm.active || s->sm.requested ||
	    squeue_count(&s->sm.unacked) == 0)
		return;
	s->sm.requested = 1;
	send_raw(s, SM_R, sizeof(SM_R) - 1);
}

/* A stanza: with stream management, kept until the server has it. */
static void
send_stanza(struct session *s, const char *data, size_t len, int flags)
{
	send_raw(s, data, len);
	sm_sent(&s->sm, data, len, flags);
	request_ack(s);
}

static void
send_stanza_buf(struct session *s, struct buf *b)
{
	send_stanza(s, b->data, b->len, 0);
	b->len = 0;
}

static char *
new_id(struct session *s, const char *what)
{
	char id[64];

	snprintf(id, sizeof(id), "clawsd-%s-%lx-%lu", what,
	    (unsigned long)getpid(), ++s->next_id);
	return xstrdup(id);
}

static void
status_disconnected(struct session *s, const char *reason, int announce)
{
	struct buf *b = &s->scratch;

	b->len = 0;
	buf_puts(b, "<disconnected xmlns=\"urn:x-clawsd\"");
	xmlw_attr_pair(b, "reason", reason);
	buf_puts(b, "/>\n");
	s->cb->status(s->arg, b->data, b->len, announce);
	b->len = 0;
}

static void
status_connected(struct session *s, int resumed)
{
	struct buf *b = &s->scratch;

	b->len = 0;
	buf_puts(b, "<connected xmlns=\"urn:x-clawsd\"");
	xmlw_attr_pair(b, "jid", s->jid);
	buf_printf(b, " resumed=\"%s\"/>\n", resumed ? "true" : "false");
	s->cb->status(s->arg, b->data, b->len, 1);
	b->len = 0;
}

static void
set_congested(struct session *s, int on)
{
	if (s->congested == on)
		return;
	s->congested = on;
	log_debug("%s reading the socket clients", on ? "pause" : "resume");
	if (s->cb->congested != NULL)
		s->cb->congested(s->arg, on);
}

static void
clear_connection(struct session *s)
{
	link_close(s->link);
	stream_reset(s->stream);
	sasl_clear(&s->sasl);
	uv_timer_stop(&s->handshake);
	uv_timer_stop(&s->ping_timer);
	free(s->bind_id);
	free(s->session_id);
	free(s->ping_id);
	s->bind_id = s->session_id = s->ping_id = NULL;
	s->ping_sent = 0;
	s->session_required = 0;
	s->sm_offered = s->can_bind = 0;
	s->server_max = 0;
	s->closing = 0;
	set_congested(s, 0);
	sm_lost(&s->sm);
	/* Without a session to resume, client stanzas go out again anew. */
	if (!sm_resumable(&s->sm))
		sm_forget(&s->sm, &s->queue);
}

static void
forget_targets(struct session *s)
{
	if (s->srvq != NULL)
		srv_cancel(s->srvq);
	s->srvq = NULL;
	srv_free_list(s->targets, s->ntargets);
	s->targets = NULL;
	s->ntargets = s->next_target = 0;
	s->resolved = s->tried_domain = 0;
}

/* Are there SRV targets, or the domain itself, not tried this round? */
static int
targets_left(const struct session *s)
{
	return s->resolved && !s->tried_domain;
}

static void
finish_stop(struct session *s)
{
	if (s->stopped)
		return;
	s->stopped = 1;
	clear_connection(s);
	uv_timer_stop(&s->retry);
	uv_timer_stop(&s->stop_timer);
	forget_targets(s);
	set_state(s, ST_DISCONNECTED, "shutdown");
	s->cb->stopped(s->arg);
}

static void
on_retry(uv_timer_t *t)
{
	connect_now(t->data);
}

/* The wait before the next attempt: doubling, with +-20% jitter. */
static uint64_t
next_delay(struct session *s, int at_max)
{
	uint64_t max = (uint64_t)s->conf->reconnect_max_delay * 1000;
	uint64_t base = at_max ? max : s->delay_ms;
	double jitter = 0.8 + 0.4 * ((double)rand_r(&s->seed) / RAND_MAX);

	s->delay_ms = base * 2 > max ? max : base * 2;
	return (uint64_t)((double)base * jitter);
}

/* Any failure: drop the connection, tell the subscribers, try again later. */
static void
fail_after(struct session *s, const char *reason, int wait_max)
{
	int was_up = s->state == ST_BINDED;
	uint64_t wait;
	char detail[600];

	log_warn("connection %s in %s: %s", was_up ? "lost" : "failed",
	    state_names[s->state], reason);
	clear_connection(s);
	if (s->stopping) {
		finish_stop(s);
		return;
	}
	/* A target that cannot be reached: the next one, at once. */
	if (s->state <= ST_STREAM_INIT && targets_left(s)) {
		connect_now(s);
		return;
	}
	forget_targets(s);
	status_disconnected(s, reason, was_up);
	wait = s->redirect != NULL ? 0 : next_delay(s, wait_max);
	snprintf(detail, sizeof(detail), "in %.1f s: %s", (double)wait / 1000,
	    reason);
	set_state(s, ST_RETRYING, detail);
	log_info("retrying in %.1f s", (double)wait / 1000);
	uv_timer_start(&s->retry, on_retry, wait, 0);
}

static void	fail(struct session *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

/* The connection is over; the reason in printf style. */
static void
fail(struct session *s, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	fail_after(s, reason, 0);
}

static void
on_handshake_timeout(uv_timer_t *t)
{
	struct session *s = t->data;

	fail(s, "handshake timeout (%u s) in %s", s->conf->connect_timeout,
	    state_names[s->state]);
}

/* "host", "host:port" or "[v6]:port" of a see-other-host error. */
static void
redirect_target(const char *to, char *host, size_t size, int *port)
{
	const char *colon = strrchr(to, ':'), *end = to + strlen(to);

	if (to[0] == '[') {
		to++;
		end = strchr(to, ']');
		colon = end != NULL && end[1] == ':' ? end + 1 : NULL;
		if (end == NULL)
			end = to + strlen(to);
	} else if (colon != NULL && strchr(to, ':') != colon)
		colon = NULL;	/* a bare IPv6 address */
	else if (colon != NULL)
		end = colon;
	if (colon != NULL && atoi(colon + 1) > 0 && atoi(colon + 1) < 65536)
		*port = atoi(colon + 1);
	snprintf(host, size, "%.*s", (int)(end - to), to);
}

static void
dial(struct session *s, const char *host, int port, int direct,
    const char *why)
{
	const struct conf *c = s->conf;

	log_info("connecting to %s port %d (%s%s%s)", host, port,
	    direct ? "direct TLS" : c->tls == CONF_TLS_NONE ? "no TLS" :
	    "STARTTLS", why ? ", " : "", why ? why : "");
	if (c->tls != CONF_TLS_NONE && !c->tls_verify)
		log_warn("TLS certificate verification is off (tls_verify = no)");
	link_connect(s->link, host, port, c->domain, direct);
}

/* The next SRV target, then (SPEC section 2) the domain itself. */
static void
next_target(struct session *s)
{
	const struct conf *c = s->conf;
	const struct srv_target *t;

	while (s->next_target < s->ntargets) {
		t = &s->targets[s->next_target++];
		/* tls = direct: never a stream that starts in plaintext. */
		if (c->tls == CONF_TLS_DIRECT && !t->direct)
			continue;
		dial(s, t->host, t->port, t->direct, "from SRV");
		return;
	}
	s->tried_domain = 1;
	dial(s, c->domain, conf_port(c), c->tls == CONF_TLS_DIRECT, NULL);
}

static void
on_srv(void *arg, enum srv_status status, struct srv_target *list, size_t n,
    const char *err)
{
	struct session *s = arg;

	s->srvq = NULL;
	s->resolved = 1;
	s->targets = list;
	s->ntargets = n;
	s->next_target = 0;
	if (err != NULL)
		log_info("DNS SRV: %s", err);
	if (status == SRV_NOT_OFFERED) {
		/* RFC 6120 3.2.1: the domain says it has no client service. */
		s->tried_domain = 1;
		fail(s, "%s", err ? err : "DNS SRV: no XMPP client service");
		return;
	}
	next_target(s);
}

/*
 * Where an attempt goes: a see-other-host redirect, the configured host,
 * or the SRV targets of the domain and then the domain itself.
 */
static void
connect_now(struct session *s)
{
	const struct conf *c = s->conf;
	char target[256];
	int port = conf_port(c);

	set_state(s, ST_CONNECTING, NULL);
	stream_reset(s->stream);
	uv_timer_start(&s->handshake, on_handshake_timeout,
	    (uint64_t)c->connect_timeout * 1000, 0);
	if (s->redirect != NULL) {
		redirect_target(s->redirect, target, sizeof(target), &port);
		free(s->redirect);
		s->redirect = NULL;
		dial(s, target, port, c->tls == CONF_TLS_DIRECT,
		    "see-other-host");
		return;
	}
	if (c->host != NULL) {
		dial(s, c->host, port, c->tls == CONF_TLS_DIRECT, NULL);
		return;
	}
	if (s->resolved) {
		next_target(s);
		return;
	}
	s->srvq = srv_resolve(s->loop, c->domain, on_srv, s);
	if (s->srvq == NULL) {
		s->resolved = 1;
		next_target(s);
	}
}

static void
send_header(struct session *s)
{
	struct buf *b = &s->scratch;

	b->len = 0;
	buf_puts(b, "<?xml version='1.0'?><stream:stream xmlns='"
	    NS_CLIENT "' xmlns:stream='" NS_STREAMS "' version='1.0'"
	    " xml:lang='en'");
	xmlw_attr_pair(b, "to", s->conf->domain);
	/* RFC 6120 4.7.1: name ourselves only once the stream is secure. */
	if (link_encrypted(s->link)) {
		buf_puts(b, " from=\"");
		xmlw_attr(b, s->conf->user, strlen(s->conf->user));
		buf_putc(b, '@');
		xmlw_attr(b, s->conf->domain, strlen(s->conf->domain));
		buf_putc(b, '"');
	}
	buf_putc(b, '>');
	send_buf(s, b);
}

/* Link events */

static void
on_link_connected(void *arg)
{
	struct session *s = arg;

	set_state(s, ST_CONNECTED, NULL);
	send_header(s);
	set_state(s, ST_STREAM_INIT, NULL);
}

static void
on_link_secured(void *arg)
{
	struct session *s = arg;

	log_debug("STARTTLS done");
	send_header(s);
}

static void
on_link_data(void *arg, const char *data, size_t len)
{
	struct session *s = arg;
	const char *err;

	s->last_rx = uv_now(s->loop);
	if (stream_feed(s->stream, data, len, &err) != 0)
		fail(s, "%s", err);
}

static void queue_flush(struct session *);

static void
on_link_written(void *arg)
{
	queue_flush(arg);
}

static void
on_link_closed(void *arg, const char *reason)
{
	fail(arg, "%s", reason);
}

static const struct link_cb link_cb = {
	.connected = on_link_connected,
	.secured = on_link_secured,
	.data = on_link_data,
	.written = on_link_written,
	.closed = on_link_closed,
};

/* The offline queue */

/* Room to send: the link keeps up and the unacked queue has space. */
static int
can_send(const struct session *s)
{
	if (s->state != ST_BINDED || s->closing)
		return 0;
	if (s->stopping)
		return 1;
	if (s->sm.active && squeue_count(&s->sm.unacked) >= s->conf->queue_max)
		return 0;
	return link_pending(s->link) < LINK_HIGH_WATER;
}

/* Send queued stanzas while there is room; the rest waits for drain/acks. */
static void
queue_flush(struct session *s)
{
	const char *p;
	size_t n = 0, len;

	while (can_send(s) &&
	    (p = squeue_at(&s->queue, 0, &len, NULL)) != NULL) {
		/* Queued before the limit was known: sending it would only
		 * get the stream closed, again and again. */
		if (s->server_max > 0 && len > s->server_max)
			log_warn("dropped a queued stanza of %zu bytes: the "
			    "server accepts at most %zu", len, s->server_max);
		else {
			send_stanza(s, p, len, SM_CLIENT);
			n++;
		}
		squeue_drop(&s->queue, 1);
	}
	if (n > 0)
		log_debug("sent %zu queued stanzas", n);
	if (squeue_count(&s->queue) == 0)
		set_congested(s, 0);
	if (s->state == ST_BINDED && squeue_count(&s->queue) > 0 &&
	    s->sm.active && squeue_count(&s->sm.unacked) >= s->conf->queue_max)
		log_debug("stream management: %zu stanzas unacknowledged, "
		    "waiting for the server", squeue_count(&s->sm.unacked));
}

int
session_submit(struct session *s, const char *data, size_t len)
{
	if (s->server_max > 0 && len > s->server_max)
		return SESSION_TOO_LARGE;
	if (squeue_count(&s->queue) == 0 && can_send(s)) {
		send_stanza(s, data, len, SM_CLIENT);
		return 0;
	}
	/*
	 * Up, but the link or the unacked queue is full: the clients are
	 * paused, and what their last reads held waits here, past
	 * queue_max if need be (it is bounded by one read per client).
	 */
	if (s->state == ST_BINDED && !s->closing && !s->stopping) {
		squeue_push(&s->queue, data, len, SM_CLIENT);
		set_congested(s, 1);
		return 0;
	}
	if (squeue_count(&s->queue) >= s->conf->queue_max)
		return SESSION_QUEUE_FULL;
	squeue_push(&s->queue, data, len, SM_CLIENT);
	return 0;
}

/* Base64 for SASL payloads; the scratch buffers are wiped after use. */

static void
b64_encode(struct buf *out, const struct buf *in)
{
	size_t olen = 0;

	mbedtls_base64_encode(NULL, 0, &olen, (const unsigned char *)in->data,
	    in->len);
	buf_reserve(out, olen);
	mbedtls_base64_encode((unsigned char *)out->data + out->len, olen,
	    &olen, (const unsigned char *)in->data, in->len);
	out->len += olen;
}

static int
b64_decode(struct buf *out, const char *text)
{
	size_t olen = 0, len = strlen(text);

	out->len = 0;
	if (len == 1 && text[0] == '=')
		return 0;
	buf_reserve(out, len);
	if (mbedtls_base64_decode((unsigned char *)out->data, len + 1, &olen,
	    (const unsigned char *)text, len) != 0)
		return -1;
	out->len = olen;
	return 0;
}

static void
wipe(struct buf *b)
{
	if (b->data != NULL)
		mbedtls_platform_zeroize(b->data, b->cap);
	b->len = 0;
}

/* <auth/>, <response/>: element around the base64 of `payload'. */
static void
send_sasl(struct session *s, const char *name, const char *mech,
    struct buf *payload)
{
	struct buf out;

	buf_init(&out);
	buf_printf(&out, "<%s xmlns='" NS_SASL "'", name);
	if (mech != NULL)
		buf_printf(&out, " mechanism='%s'", mech);
	buf_putc(&out, '>');
	if (payload->len == 0)
		buf_putc(&out, '=');
	else
		b64_encode(&out, payload);
	buf_printf(&out, "</%s>", name);
	send_raw(s, out.data, out.len);
	wipe(&out);
	buf_free(&out);
	wipe(payload);
}

/*
 * The texts (or attribute `attr') of the `item' children of the `list'
 * child of `parent', in a new array; their count.
 */
static size_t
children_text(const struct xnode *parent, const char *list, const char *ns,
    const char *item, const char *attr, const char ***out)
{
	const struct xnode *l = xnode_child(parent, list, ns), *c;
	const char *v;
	size_t n = 0;

	*out = NULL;
	if (l == NULL)
		return 0;
	for (c = l->child; c != NULL; c = c->next)
		n++;
	*out = xcalloc(n + 1, sizeof(**out));
	n = 0;
	for (c = l->child; c != NULL; c = c->next) {
		if (!xnode_is(c, item, ns))
			continue;
		v = attr ? xnode_attr(c, attr) : xnode_text((struct xnode *)c);
		if (v != NULL)
			(*out)[n++] = v;
	}
	return n;
}

static void
start_auth(struct session *s, const struct xnode *features)
{
	const char **offered = NULL, **cbtypes = NULL;
	size_t n, ncb;
	enum sasl_mech mech;
	struct buf initial;
	int rc;

	n = children_text(features, "mechanisms", NS_SASL, "mechanism",
	    NULL, &offered);
	ncb = children_text(features, "sasl-channel-binding", NS_SASL_CB,
	    "channel-binding", "type", &cbtypes);
	mech = sasl_select(s->conf->sasl_mechanisms, offered, n,
	    link_encrypted(s->link));
	if (mech != SASL_NONE && s->scram_pinned && !sasl_is_scram(mech)) {
		fail(s, "SASL: SCRAM was used with this server before, "
		    "refusing to fall back to PLAIN");
		goto out;
	}
	if (mech == SASL_NONE) {
		fail(s, n == 0 ? "SASL: the server offers no mechanism" :
		    "SASL: no mechanism in sasl_mechanisms is offered "
		    "(PLAIN needs TLS)");
		goto out;
	}
	buf_init(&initial);
	rc = sasl_start(&s->sasl, mech, s->conf->user, s->conf->password,
	    NULL, &initial);
	if (rc == 0) {
		sasl_set_cache(&s->sasl, &s->sasl_cache);
		/* XEP-0474: what the server offered, to check for downgrade. */
		rc = sasl_set_offered(&s->sasl, offered, n, cbtypes, ncb);
	}
	if (rc != 0) {
		wipe(&initial);
		buf_free(&initial);
		fail(s, "SASL: cannot start");
		goto out;
	}
	log_debug("SASL: authenticating with %s", sasl_mech_name(mech));
	send_sasl(s, "auth", sasl_mech_name(mech), &initial);
	buf_free(&initial);
	set_state(s, ST_AUTHENTICATE, sasl_mech_name(mech));
out:
	free(offered);
	free(cbtypes);
}

static void
sasl_challenge(struct session *s, struct xnode *e)
{
	struct buf in, out;
	const char *err = "malformed challenge";
	int rc = -1;

	buf_init(&in);
	buf_init(&out);
	if (b64_decode(&in, xnode_text(e)) == 0)
		rc = sasl_step(&s->sasl, in.data ? in.data : "", in.len, &out,
		    &err);
	if (rc == 0)
		send_sasl(s, "response", NULL, &out);
	wipe(&in);
	buf_free(&in);
	buf_free(&out);
	if (rc != 0)
		fail(s, "SASL: %s", err);
}

static void
sasl_success(struct session *s, struct xnode *e)
{
	struct buf in;
	const char *err = "malformed success data";
	int rc = -1;

	buf_init(&in);
	if (b64_decode(&in, xnode_text(e)) == 0)
		rc = sasl_finish(&s->sasl, in.data ? in.data : "", in.len,
		    &err);
	wipe(&in);
	buf_free(&in);
	if (rc != 0) {
		fail(s, "SASL: %s", err);
		return;
	}
	log_info("authenticated as %s@%s with %s%s", s->conf->user,
	    s->conf->domain, sasl_mech_name(s->sasl.mech),
	    sasl_cache_hit(&s->sasl) ? " (cached key)" : "");
	if (sasl_is_scram(s->sasl.mech))
		s->scram_pinned = 1;
	sasl_clear(&s->sasl);
	stream_reset(s->stream);
	set_state(s, ST_BIND, NULL);
	send_header(s);
}

/* "condition" or "condition: text" of an error element's children. */
static void
describe_error(const struct xnode *e, const char *ns, const char *prefix,
    char *out, size_t size)
{
	const struct xnode *c, *text = NULL, *cond = NULL;

	for (c = e->child; c != NULL; c = c->next) {
		if (strcmp(c->ns, ns) != 0)
			continue;
		if (strcmp(c->name, "text") == 0)
			text = c;
		else if (cond == NULL)
			cond = c;
	}
	snprintf(out, size, "%s%s%s%s", prefix,
	    cond ? cond->name : "undefined-condition",
	    text ? ": " : "", text ? xnode_text((struct xnode *)text) : "");
}

static void
sasl_failure(struct session *s, struct xnode *e)
{
	char reason[256];

	describe_error(e, NS_SASL, "SASL failure: ", reason, sizeof(reason));
	/* A failed SCRAM must not be retried with something weaker. */
	if (sasl_is_scram(s->sasl.mech))
		s->scram_pinned = 1;
	sasl_cache_clear(&s->sasl_cache);
	/* A wrong password stays wrong: do not hammer the server. */
	fail_after(s, reason, 1);
}

static void resume(struct session *);
static void send_bind(struct session *);

/* XEP-0478: the largest stanza the server takes on this stream. */
static void
stream_limits(struct session *s, const struct xnode *f)
{
	const struct xnode *l = xnode_child(f, "limits", NS_LIMITS), *m;
	unsigned long long v;
	char *end;

	m = l ? xnode_child(l, "max-bytes", NS_LIMITS) : NULL;
	if (m == NULL)
		return;
	v = strtoull(xnode_text((struct xnode *)m), &end, 10);
	if (*end != '\0' || v == 0)
		return;
	s->server_max = v > SIZE_MAX ? SIZE_MAX : (size_t)v;
	log_debug("the server accepts stanzas of up to %zu bytes",
	    s->server_max);
}

static void
stream_features(struct session *s, struct xnode *f)
{
	stream_limits(s, f);
	if (s->state == ST_STREAM_INIT) {
		if (link_encrypted(s->link) ||
		    s->conf->tls == CONF_TLS_NONE) {
			start_auth(s, f);
			return;
		}
		if (xnode_child(f, "starttls", NS_TLS) == NULL) {
			fail(s, "TLS: the server does not offer STARTTLS");
			return;
		}
		send_raw(s, "<starttls xmlns='" NS_TLS "'/>",
		    sizeof("<starttls xmlns='" NS_TLS "'/>") - 1);
		return;
	}
	if (s->state != ST_BIND) {
		fail(s, "unexpected stream features");
		return;
	}
	{
		const struct xnode *sess = xnode_child(f, "session", NS_SESSION);

		/* RFC 3921 sessions, only where the server still needs them. */
		s->session_required = sess != NULL &&
		    xnode_child(sess, "optional", NS_SESSION) == NULL;
	}
	s->can_bind = xnode_child(f, "bind", NS_BIND) != NULL;
	s->sm_offered = s->conf->stream_management &&
	    xnode_child(f, "sm", NS_SM) != NULL;
	if (s->sm_offered && sm_resumable(&s->sm)) {
		resume(s);
		return;
	}
	send_bind(s);
}

static void
send_bind(struct session *s)
{
	if (!s->can_bind) {
		fail(s, "the server offers no resource binding");
		return;
	}
	/* A new session: what the old one did not confirm goes out again. */
	sm_forget(&s->sm, &s->queue);
	free(s->bind_id);
	s->bind_id = new_id(s, "bind");
	s->scratch.len = 0;
	buf_printf(&s->scratch, "<iq type='set' id='%s'><bind xmlns='"
	    NS_BIND "'><resource>", s->bind_id);
	xmlw_text(&s->scratch, s->conf->resource, strlen(s->conf->resource));
	buf_puts(&s->scratch, "</resource></bind></iq>");
	send_buf(s, &s->scratch);
	set_state(s, ST_BINDING, NULL);
}

static void
resume(struct session *s)
{
	s->scratch.len = 0;
	buf_printf(&s->scratch, "<resume xmlns='" NS_SM "' h='%lu' previd=\"",
	    (unsigned long)s->sm.h_in);
	xmlw_attr(&s->scratch, s->sm.id, strlen(s->sm.id));
	buf_puts(&s->scratch, "\"/>");
	send_buf(s, &s->scratch);
	set_state(s, ST_BINDING, "resuming");
}

static void on_ping_timer(uv_timer_t *);

/* Keepalive: look for silence every ping_interval. */
static void
arm_keepalive(struct session *s, uint64_t ms)
{
	if (s->conf->ping_interval > 0)
		uv_timer_start(&s->ping_timer, on_ping_timer, ms, 0);
}

static void
send_ping(struct session *s)
{
	free(s->ping_id);
	s->ping_id = new_id(s, "ping");
	s->scratch.len = 0;
	buf_printf(&s->scratch, "<iq type='get' id='%s'", s->ping_id);
	xmlw_attr_pair(&s->scratch, "to", s->conf->domain);
	buf_puts(&s->scratch, "><ping xmlns='" NS_PING "'/></iq>");
	send_stanza_buf(s, &s->scratch);
	s->ping_sent = uv_now(s->loop);
	log_debug("ping: %u s of silence from the server",
	    s->conf->ping_interval);
}

/*
 * Anything read since the ping proves the server alive; the timer is not
 * re-armed on every read, it looks at the time of the last one instead.
 */
static void
on_ping_timer(uv_timer_t *t)
{
	struct session *s = t->data;
	uint64_t now = uv_now(s->loop);
	uint64_t interval = (uint64_t)s->conf->ping_interval * 1000;
	if (s->ping_sent != 0 && s->last_rx < s->ping_sent) {
		fail(s, "ping timeout (%u s)", s->conf->ping_timeout);
		return;
	}
	s->ping_sent = 0;
	if (now - s->last_rx < interval) {
		arm_keepalive(s, interval - (now - s->last_rx));
		return;
	}
	send_ping(s);
	uv_timer_start(&s->ping_timer, on_ping_timer,
	    (uint64_t)s->conf->ping_timeout * 1000, 0);
}

static void
up(struct session *s, int resumed)
{
	char detail[300];

	uv_timer_stop(&s->handshake);
	s->delay_ms = (uint64_t)s->conf->reconnect_delay * 1000;
	s->last_rx = uv_now(s->loop);
	arm_keepalive(s, (uint64_t)s->conf->ping_interval * 1000);
	snprintf(detail, sizeof(detail), "as %s", s->jid);
	set_state(s, ST_BINDED, detail);
	log_info("session %s as %s", resumed ? "resumed" : "established",
	    s->jid);
	status_connected(s, resumed);
	queue_flush(s);
}

static void
established(struct session *s)
{
	if (s->sm_offered) {
		send_raw(s, "<enable xmlns='" NS_SM "' resume='true'/>",
		    sizeof("<enable xmlns='" NS_SM "' resume='true'/>") - 1);
		sm_start(&s->sm);
	}
	if (s->conf->presence) {
		s->scratch.len = 0;
		if (s->conf->priority != 0)
			buf_printf(&s->scratch,
			    "<presence><priority>%d</priority></presence>",
			    s->conf->priority);
		else
			buf_puts(&s->scratch, "<presence/>");
		send_stanza_buf(s, &s->scratch);
	}
	up(s, 0);
}

/* <resumed/>: the server has h of ours; the rest goes again, in order. */
static void
resumed(struct session *s, struct xnode *e)
{
	const char *h = xnode_attr(e, "h");
	const char *p;
	size_t i, len;

	if (h == NULL || sm_ack(&s->sm, (uint32_t)strtoul(h, NULL, 10)) != 0)
		log_warn("stream management: the server acknowledged more "
		    "than was sent");
	sm_resumed(&s->sm);
	for (i = 0; (p = squeue_at(&s->sm.unacked, i, &len, NULL)) != NULL;
	    i++)
		send_raw(s, p, len);
	if (i > 0)
		log_info("stream management: resent %zu unacknowledged "
		    "stanzas", i);
	request_ack(s);
	up(s, 1);
}

/* <failed/>: to <resume/>, bind a new session; to <enable/>, go without. */
static void
sm_failed(struct session *s, struct xnode *e)
{
	const char *h = xnode_attr(e, "h");

	if (s->state == ST_BINDING && s->bind_id == NULL &&
	    s->session_id == NULL) {
		log_info("stream management: the server cannot resume the "
		    "session, binding a new one");
		if (h != NULL)
			sm_ack(&s->sm, (uint32_t)strtoul(h, NULL, 10));
		send_bind(s);
		return;
	}
	log_warn("stream management: the server refused to enable it");
	sm_lost(&s->sm);
	squeue_drop(&s->sm.unacked, squeue_count(&s->sm.unacked));
}

/* XEP-0198 elements: <enabled/>, <resumed/>, <failed/>, <r/>, <a/>. */
static void
sm_element(struct session *s, struct xnode *e)
{
	const char *h;

	if (strcmp(e->name, "r") == 0) {
		/* Only a stream that enabled it answers: XEP-0198 4. */
		if (!s->sm.active) {
			log_info("ignored an ack request: stream management "
			    "is not enabled");
			return;
		}
		s->scratch.len = 0;
		buf_printf(&s->scratch, "<a xmlns='" NS_SM "' h='%lu'/>",
		    (unsigned long)s->sm.h_in);
		send_buf(s, &s->scratch);
	} else if (strcmp(e->name, "a") == 0) {
		h = xnode_attr(e, "h");
		if (h == NULL || sm_ack(&s->sm, (uint32_t)strtoul(h, NULL, 10))
		    != 0)
			log_warn("stream management: bad ack from the server");
		s->sm.requested = 0;
		request_ack(s);
		queue_flush(s);
	} else if (strcmp(e->name, "enabled") == 0) {
		h = xnode_attr(e, "resume");
		sm_enabled(&s->sm, h != NULL && (strcmp(h, "true") == 0 ||
		    strcmp(h, "1") == 0) ? xnode_attr(e, "id") : NULL);
		log_info("stream management enabled%s",
		    sm_resumable(&s->sm) ? " (resumable)" : "");
	} else if (strcmp(e->name, "resumed") == 0 &&
	    s->state == ST_BINDING)
		resumed(s, e);
	else if (strcmp(e->name, "failed") == 0)
		sm_failed(s, e);
}

static void
bind_result(struct session *s, struct xnode *iq)
{
	const char *type = xnode_attr(iq, "type");
	const struct xnode *bind, *jid;
	char reason[256];

	if (type == NULL || strcmp(type, "result") != 0) {
		describe_error(xnode_child(iq, "error", NS_CLIENT) ?
		    xnode_child(iq, "error", NS_CLIENT) : iq, NS_STANZAS,
		    "bind: ", reason, sizeof(reason));
		fail(s, "%s", reason);
		return;
	}
	bind = xnode_child(iq, "bind", NS_BIND);
	jid = bind ? xnode_child(bind, "jid", NS_BIND) : NULL;
	free(s->jid);
	if (jid != NULL && xnode_text((struct xnode *)jid)[0] != '\0')
		s->jid = xstrdup(xnode_text((struct xnode *)jid));
	else
		s->jid = NULL;
	if (s->jid == NULL) {
		fail(s, "bind: no JID in the result");
		return;
	}
	free(s->bind_id);
	s->bind_id = NULL;
	if (!s->session_required) {
		established(s);
		return;
	}
	s->session_id = new_id(s, "session");
	s->scratch.len = 0;
	buf_printf(&s->scratch, "<iq type='set' id='%s'><session xmlns='"
	    NS_SESSION "'/></iq>", s->session_id);
	send_buf(s, &s->scratch);
}

static void
session_result(struct session *s, struct xnode *iq)
{
	const char *type = xnode_attr(iq, "type");

	free(s->session_id);
	s->session_id = NULL;
	if (type == NULL || strcmp(type, "result") != 0) {
		fail(s, "session: refused by the server");
		return;
	}
	established(s);
}

/* The server speaks as the domain, or for our account (the bare JID). */
static int
from_server(const struct session *s, const char *from)
{
	size_t ul = strlen(s->conf->user), dl = strlen(s->conf->domain);

	if (from == NULL || strcmp(from, s->conf->domain) == 0)
		return 1;
	return strncmp(from, s->conf->user, ul) == 0 && from[ul] == '@' &&
	    strncmp(from + ul + 1, s->conf->domain, dl) == 0 &&
	    from[ul + 1 + dl] == '\0';
}

/* Pings from the server itself are answered here and not relayed. */
static int
server_ping(struct session *s, struct xnode *iq)
{
	const char *type = xnode_attr(iq, "type");
	const char *from = xnode_attr(iq, "from");
	const char *id = xnode_attr(iq, "id");

	if (type == NULL || strcmp(type, "get") != 0 || id == NULL ||
	    xnode_child(iq, "ping", NS_PING) == NULL || !from_server(s, from))
		return 0;
	s->scratch.len = 0;
	buf_puts(&s->scratch, "<iq type='result'");
	xmlw_attr_pair(&s->scratch, "id", id);
	if (from != NULL)
		xmlw_attr_pair(&s->scratch, "to", from);
	buf_puts(&s->scratch, "/>");
	send_buf(s, &s->scratch);
	return 1;
}

static int
is_id(const char *id, const char *ours)
{
	return id != NULL && ours != NULL && strcmp(id, ours) == 0;
}

static void
iq(struct session *s, const struct stream_elem *e)
{
	struct xnode *iq = e->tree;
	const char *id = xnode_attr(iq, "id");

	if (s->state == ST_BINDING && is_id(id, s->bind_id)) {
		bind_result(s, iq);
		return;
	}
	if (s->state == ST_BINDING && is_id(id, s->session_id)) {
		session_result(s, iq);
		return;
	}
	if (is_id(id, s->ping_id)) {
		free(s->ping_id);
		s->ping_id = NULL;
		return;
	}
	if (server_ping(s, iq))
		return;
	if (s->state == ST_BINDED)
		s->cb->line(s->arg, e->line, e->len);
}

static void
stream_error(struct session *s, struct xnode *e)
{
	char reason[256];

	const struct xnode *other = xnode_child(e, "see-other-host",
	    NS_STREAM_ERR);

	describe_error(e, NS_STREAM_ERR, "stream error: ", reason,
	    sizeof(reason));
	if (other != NULL && xnode_text((struct xnode *)other)[0] != '\0') {
		free(s->redirect);
		s->redirect = xstrdup(xnode_text((struct xnode *)other));
		log_info("the server redirects to %s", s->redirect);
	}
	if (xnode_child(e, "conflict", NS_STREAM_ERR) != NULL)
		log_warn("another client took over the resource of %s",
		    s->jid ? s->jid : s->conf->user);
	fail(s, "%s", reason);
}

static void
negotiation(struct session *s, struct xnode *e)
{
	if (xnode_is(e, "features", NS_STREAMS))
		stream_features(s, e);
	else if (xnode_is(e, "proceed", NS_TLS) &&
	    s->state == ST_STREAM_INIT) {
		/* Whatever followed <proceed/> in plaintext is dropped. */
		stream_reset(s->stream);
		link_starttls(s->link);
	} else if (xnode_is(e, "failure", NS_TLS))
		fail(s, "TLS: the server refused STARTTLS");
	else if (xnode_is(e, "challenge", NS_SASL) &&
	    s->state == ST_AUTHENTICATE)
		sasl_challenge(s, e);
	else if (xnode_is(e, "success", NS_SASL) &&
	    s->state == ST_AUTHENTICATE)
		sasl_success(s, e);
	else if (xnode_is(e, "failure", NS_SASL) &&
	    s->state == ST_AUTHENTICATE)
		sasl_failure(s, e);
	else
		fail(s, "unexpected <%s xmlns='%s'> in %s", e->name, e->ns,
		    state_names[s->state]);
}

/* Stream events */

static void
on_stream_open(void *arg, const struct xnode *header)
{
	const char *id = xnode_attr(header, "id");

	log_debug("stream opened by the server (id %s)", id ? id : "none");
}

/* Negotiation belongs to the stream, never to the subscribers. */
static int
stream_level(const struct xnode *e)
{
	static const char *const ns[] = {
		NS_STREAMS, NS_TLS, NS_SASL, NS_SM,
	};
	size_t i;

	for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
		if (strcmp(e->ns, ns[i]) == 0)
			return 1;
	return 0;
}

static void
on_stream_element(void *arg, const struct stream_elem *e)
{
	struct session *s = arg;

	if (e->stanza) {
		sm_received(&s->sm);
		if (strcmp(e->name, "iq") == 0)
			iq(s, e);
		else if (s->state == ST_BINDED)
			s->cb->line(s->arg, e->line, e->len);
		return;
	}
	if (xnode_is(e->tree, "error", NS_STREAMS)) {
		stream_error(s, e->tree);
		return;
	}
	if (strcmp(e->tree->ns, NS_SM) == 0 &&
	    (s->state == ST_BINDED || s->state == ST_BINDING)) {
		sm_element(s, e->tree);
		return;
	}
	if (s->state == ST_BINDED) {
		if (stream_level(e->tree)) {
			log_debug("ignored <%s xmlns='%s'> from the server: "
			    "stream level", e->tree->name, e->tree->ns);
			return;
		}
		s->cb->line(s->arg, e->line, e->len);
		return;
	}
	negotiation(s, e->tree);
}

/* The old stream of a changed configuration is closed: connect anew. */
static void
reopen(struct session *s)
{
	uv_timer_stop(&s->stop_timer);
	log_info("reconnecting with the new configuration");
	status_disconnected(s, "configuration changed", 1);
	clear_connection(s);
	connect_now(s);
}

static void
on_stream_close(void *arg)
{
	struct session *s = arg;

	if (s->stopping) {
		log_info("stream closed");
		finish_stop(s);
		return;
	}
	if (s->closing) {
		reopen(s);
		return;
	}
	fail(s, "stream closed by the server");
}

static const struct stream_cb stream_cb = {
	.open = on_stream_open,
	.element = on_stream_element,
	.close = on_stream_close,
};

/* Interface */

struct session *
session_new(uv_loop_t *loop, const struct session_cb *cb, void *arg)
{
	struct session *s = xcalloc(1, sizeof(*s));

	s->loop = loop;
	s->cb = cb;
	s->arg = arg;
	s->link = link_new(loop, &link_cb, s);
	s->stream = stream_new(262144, &stream_cb, s);
	if (s->link == NULL || s->stream == NULL) {
		link_free(s->link);
		stream_free(s->stream);
		free(s);
		return NULL;
	}
	buf_init(&s->scratch);
	squeue_init(&s->queue);
	sm_init(&s->sm);
	uv_timer_init(loop, &s->handshake);
	uv_timer_init(loop, &s->retry);
	uv_timer_init(loop, &s->stop_timer);
	uv_timer_init(loop, &s->ping_timer);
	s->handshake.data = s->retry.data = s->stop_timer.data = s;
	s->ping_timer.data = s;
	s->seed = (unsigned)uv_hrtime() ^ (unsigned)getpid();
	s->state = ST_DISCONNECTED;
	return s;
}

int
session_configure(struct session *s, const struct conf *conf)
{
	struct link_tls tls = {
		.ca_file = conf->ca_file,
		.verify = conf->tls_verify,
	};

	s->conf = conf;
	s->delay_ms = (uint64_t)conf->reconnect_delay * 1000;
	stream_set_max(s->stream, conf->max_stanza_size);
	return link_configure(s->link, &tls);
}

void
session_start(struct session *s)
{
	status_disconnected(s, "connecting", 0);
	connect_now(s);
}

static void
on_stop_timeout(uv_timer_t *t)
{
	struct session *s = t->data;

	log_warn("the server did not close its stream in time");
	if (s->stopping)
		finish_stop(s);
	else
		reopen(s);
}

void
session_restart(struct session *s)
{
	forget_targets(s);
	/* Another account or resource: the old session is not ours to resume. */
	sm_forget(&s->sm, &s->queue);
	sasl_cache_clear(&s->sasl_cache);
	s->scram_pinned = 0;
	if (s->closing)
		return;
	if (s->state == ST_BINDED && !s->stopping) {
		/* Close the old session properly: the server frees it at once
		 * instead of keeping it for a resumption that never comes. */
		s->closing = 1;
		send_raw(s, "</stream:stream>", 16);
		uv_timer_start(&s->stop_timer, on_stop_timeout, STOP_TIMEOUT_MS,
		    0);
		return;
	}
	clear_connection(s);
	uv_timer_stop(&s->retry);
	connect_now(s);
}

void
session_stop(struct session *s)
{
	s->stopping = 1;
	uv_timer_stop(&s->retry);
	if (s->state != ST_BINDED) {
		if (squeue_count(&s->queue) > 0)
			log_warn("shutdown: %zu queued stanzas not sent: the "
			    "session is down", squeue_count(&s->queue));
		finish_stop(s);
		return;
	}
	queue_flush(s);
	send_raw(s, "</stream:stream>", 16);
	uv_timer_start(&s->stop_timer, on_stop_timeout, STOP_TIMEOUT_MS, 0);
}

/*
 * The struct goes once its last timer is closed: libuv reads every closing
 * handle after the close callback of the one before it has run.
 */
static void
on_session_closed(uv_handle_t *h)
{
	struct session *s = h->data;

	if (--s->open_timers == 0)
		free(s);
}

void
session_free(struct session *s)
{
	if (s == NULL)
		return;
	clear_connection(s);
	squeue_free(&s->queue);
	sm_free(&s->sm);
	free(s->redirect);
	link_free(s->link);
	stream_free(s->stream);
	sasl_clear(&s->sasl);
	sasl_cache_clear(&s->sasl_cache);
	free(s->jid);
	buf_free(&s->scratch);
	s->open_timers = 4;
	uv_close((uv_handle_t *)&s->handshake, on_session_closed);
	uv_close((uv_handle_t *)&s->retry, on_session_closed);
	uv_close((uv_handle_t *)&s->ping_timer, on_session_closed);
	uv_close((uv_handle_t *)&s->stop_timer, on_session_closed);
}
