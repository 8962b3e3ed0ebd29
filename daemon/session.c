/*
 * The session: one state machine, and the only place where the connection
 * changes state.  A newcomer reads it here.
 *
 * state        seed name    waiting for              on -> next state
 * ------------ ------------ ------------------------ ----------------------
 * DISCONNECTED Disconnected session_start            start -> CONNECTING
 * RETRYING     Retrying     the backoff timer        timer -> CONNECTING
 * CONNECTING   Connecting   SRV, DNS, TCP, direct TLS  link up -> CONNECTED
 * CONNECTED    Connected    (our header goes at once) -> STREAM_INIT
 * STREAM_INIT  Stream Init  <features>               secure, or tls = none:
 *                                                    <auth> -> AUTHENTICATE
 *                                                    else <starttls>
 *                                                      -> STARTTLS
 * STARTTLS     Stream Init  <proceed/>               <proceed/> -> TLS
 * TLS          Stream Init  the TLS handshake        secured -> STREAM_INIT
 * AUTHENTICATE Authenticate SASL                     <challenge/> -> same
 *                                                    <success/> -> BIND
 * AUTHENTICATE2 Authenticate SASL2 (XEP-0388)         <challenge/> -> same
 *                                                    <success/>: bound or
 *                                                      resumed -> UP2,
 *                                                      else -> BIND
 *                                                    <continue/>: tasks
 *                                                      clawsd cannot do
 *                                                      -> RETRYING
 * FAST         Authenticate SASL2 with a FAST token   <success/> as above;
 *                                                    <failure/>: the token
 *                                                      is dropped, and at
 *                                                      once -> CONNECTING
 * BIND         Bind         <features> again         resumable: <resume>
 *                                                      -> RESUMING
 *                                                    else <bind> -> BINDING
 * RESUMING     Binding      <resumed/>, <failed/>    <resumed/> -> BINDED
 *                                                    <failed/>: <bind>
 *                                                      -> BINDING
 * BINDING      Binding      the bind result          our JID -> SESSION if
 *                                                      required, or BINDED
 * SESSION      Binding      RFC 3921 session result  result -> BINDED
 * UP2          Binded       the <features> SASL2     <features> -> BINDED
 *                           success owes; up already
 * BINDED       Binded       stanzas, <r/>, <a/>      restart -> CLOSING
 *                                                    stop -> STOPPING
 * CLOSING      Binded       the server's close       close -> CONNECTING
 *              (reload: our </stream:stream> is out)
 * STOPPING     Binded       the server's close       close -> DISCONNECTED
 *              (shutdown: our </stream:stream> is out)
 *
 * From any state with a connection: a stream error, the link closing, the
 * handshake deadline, a ping timeout, or any element `machine' below has
 * no handler for in that state (a protocol error) -> RETRYING; in CLOSING
 * -> CONNECTING, in STOPPING -> DISCONNECTED.  Every transition goes
 * through set_state, which logs it with the seed's names (and the detail
 * of the states that share one), and tells the STATUS line.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

#include "buf.h"
#include "fast.h"
#include "kdf.h"
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
#define NS_SASL2	"urn:xmpp:sasl:2"
#define NS_BIND2	"urn:xmpp:bind:0"
#define NS_FAST		"urn:xmpp:fast:0"

/*
 * Stanzas wait in the queue while this much is still unsent on the link.
 * Enough for the loop to frame the next megabytes while the kernel takes
 * the previous ones: at 1 MiB the clients were paused and resumed so
 * often that client -> server over TLS lost a fifth.
 */
#define LINK_HIGH_WATER	(1u << 22)
/* How long a shutdown or a reload waits for the server to close its stream. */
#define STOP_TIMEOUT_MS	3000
/*
 * Unacknowledged stanzas kept for a resend: queue_max, but never fewer
 * than this (with queue_max = 0 every client would wait forever, and with
 * a handful every stanza would wait for a round trip).
 */
#define SM_WINDOW_MIN	64
/* see-other-host redirects followed in one attempt (RFC 6120 4.9.3.19). */
#define MAX_REDIRECTS	3
/* The longest JID (RFC 7622 3.1: three parts of 1023 bytes, two separators). */
#define JID_MAX		3071

enum state {
	ST_DISCONNECTED,
	ST_RETRYING,
	ST_CONNECTING,
	ST_CONNECTED,
	ST_STREAM_INIT,
	ST_STARTTLS,
	ST_TLS,
	ST_AUTHENTICATE,
	ST_AUTHENTICATE2,
	ST_FAST,
	ST_BIND,
	ST_RESUMING,
	ST_BINDING,
	ST_SESSION,
	ST_UP2,			/* the states from here on are up */
	ST_BINDED,
	ST_CLOSING,
	ST_STOPPING,
	ST_COUNT
};

/* What can happen on the stream: the server's elements, and its close. */
enum event {
	EV_FEATURES,		/* <stream:features> */
	EV_PROCEED,		/* STARTTLS <proceed/> */
	EV_TLS_FAILURE,		/* STARTTLS <failure/> */
	EV_CHALLENGE,		/* SASL */
	EV_SUCCESS,
	EV_SASL_FAILURE,
	EV_CHALLENGE2,		/* SASL2 */
	EV_SUCCESS2,
	EV_FAILURE2,
	EV_CONTINUE2,
	EV_ENABLED,		/* XEP-0198 */
	EV_RESUMED,
	EV_SM_FAILED,
	EV_SM_R,
	EV_SM_A,
	EV_IQ,			/* stanzas */
	EV_STANZA,		/* message, presence */
	EV_OTHER,		/* any other element that is not stream-level */
	EV_UNKNOWN,		/* stream-level, but none of the above */
	EV_STREAM_ERROR,	/* <stream:error> */
	EV_CLOSE,		/* the server's </stream:stream> */
	EV_COUNT
};

static const char *const event_names[EV_COUNT] = {
	[EV_FEATURES] = "<stream:features>", [EV_PROCEED] = "<proceed/>",
	[EV_TLS_FAILURE] = "a STARTTLS <failure/>",
	[EV_CHALLENGE] = "<challenge/>", [EV_SUCCESS] = "<success/>",
	[EV_SASL_FAILURE] = "a SASL <failure/>",
	[EV_CHALLENGE2] = "a SASL2 <challenge/>",
	[EV_SUCCESS2] = "a SASL2 <success/>",
	[EV_FAILURE2] = "a SASL2 <failure/>",
	[EV_CONTINUE2] = "a SASL2 <continue/>",
	[EV_ENABLED] = "<enabled/>", [EV_RESUMED] = "<resumed/>",
	[EV_SM_FAILED] = "a stream management <failed/>", [EV_SM_R] = "<r/>",
	[EV_SM_A] = "<a/>", [EV_IQ] = "<iq/>", [EV_STANZA] = "a stanza",
	[EV_OTHER] = "an element", [EV_UNKNOWN] = "a stream-level element",
	[EV_STREAM_ERROR] = "<stream:error>", [EV_CLOSE] = "</stream:stream>",
};

struct session;
typedef void (*handler)(struct session *, const struct stream_elem *);

static void	on_features_tls(struct session *, const struct stream_elem *);
static void	on_proceed(struct session *, const struct stream_elem *);
static void	on_tls_failure(struct session *, const struct stream_elem *);
static void	on_challenge(struct session *, const struct stream_elem *);
static void	on_success(struct session *, const struct stream_elem *);
static void	on_sasl_failure(struct session *, const struct stream_elem *);
static void	on_success2(struct session *, const struct stream_elem *);
static void	on_fast_failure(struct session *, const struct stream_elem *);
static void	on_continue2(struct session *, const struct stream_elem *);
static void	on_features_up2(struct session *, const struct stream_elem *);
static void	on_features_bind(struct session *, const struct stream_elem *);
static void	on_resumed(struct session *, const struct stream_elem *);
static void	on_resume_failed(struct session *, const struct stream_elem *);
static void	on_bind_result(struct session *, const struct stream_elem *);
static void	on_session_result(struct session *, const struct stream_elem *);
static void	on_iq(struct session *, const struct stream_elem *);
static void	on_relay(struct session *, const struct stream_elem *);
static void	on_enabled(struct session *, const struct stream_elem *);
static void	on_enable_failed(struct session *, const struct stream_elem *);
static void	on_r(struct session *, const struct stream_elem *);
static void	on_r_closed(struct session *, const struct stream_elem *);
static void	on_a(struct session *, const struct stream_elem *);
static void	on_stream_error(struct session *, const struct stream_elem *);
static void	on_closed_by_server(struct session *,
		    const struct stream_elem *);
static void	on_closed_reload(struct session *, const struct stream_elem *);
static void	on_closed_stop(struct session *, const struct stream_elem *);

/* What the server may do in each state (SPEC 3); the rest is an error. */
#define ANY_STREAM \
	[EV_STREAM_ERROR] = on_stream_error, \
	[EV_CLOSE] = on_closed_by_server
#define UP_SM \
	[EV_ENABLED] = on_enabled, [EV_SM_FAILED] = on_enable_failed, \
	[EV_SM_A] = on_a
#define UP_STANZAS \
	[EV_IQ] = on_iq, [EV_STANZA] = on_relay, [EV_OTHER] = on_relay

static const struct {
	const char	*seed;		/* name in the log and STATUS */
	const char	*detail;	/* what tells it from the others */
	handler		 on[EV_COUNT];
} machine[ST_COUNT] = {
	[ST_DISCONNECTED] = { "Disconnected", NULL, { 0 } },
	[ST_RETRYING] = { "Retrying", NULL, { 0 } },
	[ST_CONNECTING] = { "Connecting", NULL, { 0 } },
	[ST_CONNECTED] = { "Connected", NULL, { 0 } },
	[ST_STREAM_INIT] = { "Stream Init", NULL, {
		[EV_FEATURES] = on_features_tls, ANY_STREAM } },
	[ST_STARTTLS] = { "Stream Init", "STARTTLS", {
		[EV_PROCEED] = on_proceed, [EV_TLS_FAILURE] = on_tls_failure,
		ANY_STREAM } },
	[ST_TLS] = { "Stream Init", "TLS handshake", { 0 } },
	[ST_AUTHENTICATE] = { "Authenticate", NULL, {
		[EV_CHALLENGE] = on_challenge, [EV_SUCCESS] = on_success,
		[EV_SASL_FAILURE] = on_sasl_failure, ANY_STREAM } },
	[ST_AUTHENTICATE2] = { "Authenticate", "SASL2", {
		[EV_CHALLENGE2] = on_challenge, [EV_SUCCESS2] = on_success2,
		[EV_FAILURE2] = on_sasl_failure, [EV_CONTINUE2] = on_continue2,
		ANY_STREAM } },
	/* HT has no challenge. */
	[ST_FAST] = { "Authenticate", "FAST", {
		[EV_SUCCESS2] = on_success2, [EV_FAILURE2] = on_fast_failure,
		[EV_CONTINUE2] = on_continue2, ANY_STREAM } },
	[ST_BIND] = { "Bind", NULL, {
		[EV_FEATURES] = on_features_bind, ANY_STREAM } },
	[ST_RESUMING] = { "Binding", "resuming", {
		[EV_RESUMED] = on_resumed, [EV_SM_FAILED] = on_resume_failed,
		ANY_STREAM } },
	[ST_BINDING] = { "Binding", NULL, {
		[EV_IQ] = on_bind_result, ANY_STREAM } },
	/* Bound already: stanzas for the resource may come. */
	[ST_SESSION] = { "Binding", "session", {
		[EV_IQ] = on_session_result, [EV_STANZA] = on_relay,
		[EV_OTHER] = on_relay, ANY_STREAM } },
	/* Resumed stanzas may come before the features (Prosody). */
	[ST_UP2] = { "Binded", NULL, {
		UP_STANZAS, UP_SM, [EV_SM_R] = on_r,
		[EV_FEATURES] = on_features_up2, ANY_STREAM } },
	[ST_BINDED] = { "Binded", NULL, {
		UP_STANZAS, UP_SM, [EV_SM_R] = on_r, ANY_STREAM } },
	/* Our stream is closed: nothing more may be written, <r/> included. */
	[ST_CLOSING] = { "Binded", "closing for a new configuration", {
		UP_STANZAS, UP_SM, [EV_SM_R] = on_r_closed,
		[EV_STREAM_ERROR] = on_stream_error,
		[EV_CLOSE] = on_closed_reload } },
	[ST_STOPPING] = { "Binded", "shutting down", {
		UP_STANZAS, UP_SM, [EV_SM_R] = on_r_closed,
		[EV_STREAM_ERROR] = on_stream_error,
		[EV_CLOSE] = on_closed_stop } },
};

/* How a connection ended, for the wait before the next one. */
enum ending {
	END_FAILURE,		/* backoff */
	END_AUTH,		/* wrong credentials: the longest wait */
	END_CONFLICT,		/* another client took the resource */
	END_REDIRECT,		/* see-other-host: at once, counted */
	END_AGAIN,		/* a FAST token refused: at once, with SCRAM */
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
	uint64_t		 last_rx;	/* time of the last element */
	uint64_t		 delay_ms;	/* next wait in Retrying */
	unsigned		 seed;		/* jitter only, not secrets */
	char			*redirect;	/* see-other-host, for one try */
	int			 redirects;	/* followed in this attempt */
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
	struct kdf		*kdf;		/* its PBKDF2, on the pool */
	int			 scram_pinned;	/* no PLAIN once SCRAM was used */
	struct fast		*fast;		/* SASL2 client id, FAST token */
	unsigned		 asked;		/* ASK_*: what SASL2 asked for */
	const char		*token_mech;	/* of the token asked for */
	int			 unanswered;	/* resumed, nothing answered yet */
	int			 session_required;
	char			*jid;		/* bound full JID */
	char			*bind_id;
	char			*session_id;
	char			*ping_id;	/* a ping awaits its pong */
	uint64_t		 since;		/* loop time of set_state */
	/*
	 * Receipts without stream management: the tags of the stanzas sent
	 * since, the first `rcpt_covered' of them before the ping `rcpt_id'.
	 */
	uint64_t		*rcpt;
	size_t			 nrcpt, rcpt_cap, rcpt_covered;
	char			*rcpt_id;
	unsigned long		 next_id;
	struct squeue		 queue;		/* from clients, not yet sent */
	struct sm		*sm;
	int			 congested;	/* clients are paused */
	int			 open_timers;	/* not closed yet */
	struct buf		 scratch;
};

/* What one SASL2 <authenticate/> carries, for checking its <success/>. */
#define ASK_BIND	0x01		/* Bind2 */
#define ASK_ENABLE	0x02		/* XEP-0198 enable, inside Bind2 */
#define ASK_RESUME	0x04		/* XEP-0198 resume */
#define ASK_TOKEN	0x08		/* a FAST token */

static void connect_now(struct session *);
static void queue_flush(struct session *);

/* Bound (or resumed): stanzas flow both ways. */
static int
is_up(const struct session *s)
{
	return s->state == ST_UP2 || s->state == ST_BINDED;
}

const char *
session_state(const struct session *s)
{
	return machine[s->state].seed;
}

void
session_info(const struct session *s, struct session_info *i)
{
	i->state = machine[s->state].seed;
	i->jid = is_up(s) ? s->jid : NULL;
	i->sm = is_up(s) && sm_counting(s->sm);
	i->queued = squeue_count(&s->queue);
	i->unacked = sm_unacked(s->sm) + s->nrcpt;
	i->since = s->since;
}

/*
 * Every change of state happens here, and is logged with its detail
 * ("as JID", "in 6 s: reason"), which also goes to the state callback.
 */
static void
set_state(struct session *s, enum state next, const char *detail)
{
	const char *from = machine[s->state].seed, *to = machine[next].seed;
	int shown;

	if (s->state == next)
		return;
	if (detail == NULL)
		detail = machine[next].detail;
	log_debug("state: %s -> %s%s%s", from, to, detail ? ": " : "",
	    detail ? detail : "");
	/* States alike outside (UP2, BINDED) are one state to the user. */
	shown = strcmp(from, to) != 0 || machine[s->state].detail != NULL ||
	    machine[next].detail != NULL;
	s->state = next;
	if (!shown)
		return;
	s->since = uv_now(s->loop);
	if (s->cb->state != NULL)
		s->cb->state(s->arg, to, detail);
}

/* A timer: its only failure is a closing handle, which is a bug here. */
static void
arm(uv_timer_t *t, uv_timer_cb cb, uint64_t ms)
{
	int rc = uv_timer_start(t, cb, ms, 0);

	if (rc != 0)
		log_error("timer: %s", uv_strerror(rc));
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
 * trip, whatever the number of stanzas, and none when idle.  None after
 * our </stream:stream> either (an <a/> may still come): nothing follows
 * it, or the server resets the connection and loses its own close.
 */
static void
request_ack(struct session *s)
{
	if (is_up(s) && sm_want_ack(s->sm))
		send_raw(s, SM_R, sizeof(SM_R) - 1);
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
report_ack(struct session *s, uint64_t tag)
{
	if (tag != 0 && s->cb->acked != NULL)
		s->cb->acked(s->arg, tag);
}

static void
report_refused(struct session *s, uint64_t tag, const char *condition,
    const char *text)
{
	if (tag != 0 && s->cb->refused != NULL)
		s->cb->refused(s->arg, tag, condition, text);
}

/*
 * Without stream management, the server has a stanza once it answers a
 * ping sent after it.  One such ping at a time: it covers every stanza
 * sent before it, the next one those sent meanwhile.
 */
static void
receipt_ping(struct session *s)
{
	if (s->rcpt_id != NULL || s->nrcpt == 0)
		return;
	s->rcpt_id = new_id(s, "receipt");
	s->rcpt_covered = s->nrcpt;
	s->scratch.len = 0;
	buf_printf(&s->scratch, "<iq type='get' id='%s'", s->rcpt_id);
	xmlw_attr_pair(&s->scratch, "to", s->conf->domain);
	buf_puts(&s->scratch, "><ping xmlns='" NS_PING "'/></iq>");
	send_buf(s, &s->scratch);
}

static void
receipt_wait(struct session *s, uint64_t tag)
{
	if (s->nrcpt == s->rcpt_cap) {
		s->rcpt_cap = s->rcpt_cap ? s->rcpt_cap * 2 : 64;
		s->rcpt = xrealloc(s->rcpt, s->rcpt_cap * sizeof(*s->rcpt));
	}
	s->rcpt[s->nrcpt++] = tag;
}

/* The receipt ping is answered: the stanzas before it are acknowledged. */
static void
receipt_pong(struct session *s)
{
	size_t i, n = s->rcpt_covered;

	free(s->rcpt_id);
	s->rcpt_id = NULL;
	s->rcpt_covered = 0;
	for (i = 0; i < n; i++)
		report_ack(s, s->rcpt[i]);
	memmove(s->rcpt, s->rcpt + n, (s->nrcpt - n) * sizeof(*s->rcpt));
	s->nrcpt -= n;
	receipt_ping(s);
}

/* The connection is gone before the server confirmed these stanzas. */
static void
receipts_lost(struct session *s)
{
	size_t i, n = s->nrcpt;

	free(s->rcpt_id);
	s->rcpt_id = NULL;
	s->nrcpt = s->rcpt_covered = 0;
	for (i = 0; i < n; i++)
		report_refused(s, s->rcpt[i], "timeout", "the connection was "
		    "lost before the server confirmed the stanza");
}

/* Stream management released a stanza the server acknowledged. */
static void
on_released(void *arg, uint64_t tag)
{
	report_ack(arg, tag);
}

/* A stanza: with stream management, kept until the server has it. */
static void
send_stanza(struct session *s, const char *data, size_t len, int flags,
    uint64_t tag)
{
	send_raw(s, data, len);
	sm_sent(s->sm, data, len, flags, tag);
	if (tag != 0 && !sm_counting(s->sm)) {
		receipt_wait(s, tag);
		receipt_ping(s);
	}
	request_ack(s);
}

static void
send_stanza_buf(struct session *s, struct buf *b)
{
	send_stanza(s, b->data, b->len, 0, 0);
	b->len = 0;
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
	kdf_cancel(s->kdf);
	s->kdf = NULL;
	sasl_clear(&s->sasl);
	uv_timer_stop(&s->handshake);
	uv_timer_stop(&s->ping_timer);
	free(s->bind_id);
	free(s->session_id);
	free(s->ping_id);
	s->bind_id = s->session_id = s->ping_id = NULL;
	s->session_required = 0;
	s->sm_offered = s->can_bind = 0;
	s->asked = 0;
	s->unanswered = 0;
	s->server_max = 0;
	set_congested(s, 0);
	receipts_lost(s);
	sm_lost(s->sm);
	/* Without a session to resume, client stanzas go out again anew. */
	if (sm_resume_id(s->sm) == NULL)
		sm_forget(s->sm, &s->queue);
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
	if (squeue_count(&s->queue) > 0)
		log_warn("shutdown: %zu queued stanzas not sent: the session "
		    "is down", squeue_count(&s->queue));
	clear_connection(s);
	uv_timer_stop(&s->retry);
	uv_timer_stop(&s->stop_timer);
	forget_targets(s);
	set_state(s, ST_DISCONNECTED, "shutdown");
	s->cb->stopped(s->arg);
}

/*
 * The old stream of a changed configuration is over: connect anew.  After
 * a close by both sides the server has all we sent (RFC 6120 4.4), else
 * the unacknowledged client stanzas go again on the new session.
 */
static void
reopen(struct session *s, int clean)
{
	uv_timer_stop(&s->stop_timer);
	log_info("reconnecting with the new configuration");
	status_disconnected(s, "configuration changed", 1);
	if (clean)
		sm_closed(s->sm);
	else
		sm_forget(s->sm, &s->queue);
	clear_connection(s);
	s->delay_ms = (uint64_t)s->conf->reconnect_delay * 1000;
	s->redirects = 0;
	connect_now(s);
}

static void
on_retry(uv_timer_t *t)
{
	connect_now(t->data);
}

/* The wait before the next attempt: doubling, +-20% jitter, capped. */
static uint64_t
next_delay(struct session *s, int at_max)
{
	uint64_t max = (uint64_t)s->conf->reconnect_max_delay * 1000;
	uint64_t base = at_max ? max : s->delay_ms;
	double jitter = 0.8 + 0.4 * ((double)rand_r(&s->seed) / RAND_MAX);
	uint64_t wait = (uint64_t)((double)base * jitter);

	s->delay_ms = base * 2 > max ? max : base * 2;
	return wait > max ? max : wait;
}

/* The connection is over: tell the subscribers, try again later. */
static void
end_connection(struct session *s, enum ending how, const char *reason)
{
	int was_up = s->state >= ST_UP2;
	enum state st = s->state;
	uint64_t wait;
	char detail[600];

	if (st <= ST_RETRYING)
		return;		/* nothing is connected */
	log_warn("connection %s in %s: %s", was_up ? "lost" : "failed",
	    machine[st].seed, reason);
	if (st == ST_STOPPING) {
		finish_stop(s);
		return;
	}
	if (st == ST_CLOSING) {
		reopen(s, 0);
		return;
	}
	clear_connection(s);
	/* Without the token: no backoff, it cannot happen twice. */
	if (how == END_AGAIN) {
		log_info("logging in again with the password");
		connect_now(s);
		return;
	}
	if (how != END_REDIRECT)
		s->redirects = 0;
	/* A target that cannot be reached: the next one, at once. */
	if (how == END_FAILURE && st <= ST_TLS && targets_left(s)) {
		connect_now(s);
		return;
	}
	forget_targets(s);
	status_disconnected(s, reason, was_up);
	/* A session that was up retries soon; one taken over backs off. */
	if (was_up && how != END_CONFLICT)
		s->delay_ms = (uint64_t)s->conf->reconnect_delay * 1000;
	if (how == END_REDIRECT) {
		(void)next_delay(s, 0);		/* an attempt all the same */
		wait = 0;
	} else
		wait = next_delay(s, how == END_AUTH);
	if (how == END_CONFLICT)
		log_warn("conflict: another client uses %s with the same "
		    "resource (a second clawsd with this configuration?); "
		    "waiting %.1f s", s->jid ? s->jid : s->conf->user,
		    (double)wait / 1000);
	snprintf(detail, sizeof(detail), "in %.1f s: %s", (double)wait / 1000,
	    reason);
	set_state(s, ST_RETRYING, detail);
	log_info("retrying in %.1f s", (double)wait / 1000);
	arm(&s->retry, on_retry, wait);
}

static void	fail(struct session *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));
static void	protocol_error(struct session *, const char *, ...)
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
	end_connection(s, END_FAILURE, reason);
}

/* The server broke the protocol: the same, named as such. */
static void
protocol_error(struct session *s, const char *fmt, ...)
{
	char reason[512];
	va_list ap;
	int n;

	n = snprintf(reason, sizeof(reason), "protocol error: ");
	va_start(ap, fmt);
	vsnprintf(reason + n, sizeof(reason) - (size_t)n, fmt, ap);
	va_end(ap);
	end_connection(s, END_FAILURE, reason);
}

static void
on_handshake_timeout(uv_timer_t *t)
{
	struct session *s = t->data;

	fail(s, "handshake timeout (%u s) in %s", s->conf->connect_timeout,
	    machine[s->state].seed);
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
	arm(&s->handshake, on_handshake_timeout,
	    (uint64_t)c->connect_timeout * 1000);
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

	if (s->state != ST_CONNECTING) {
		fail(s, "the link came up in %s", machine[s->state].seed);
		return;
	}
	set_state(s, ST_CONNECTED, NULL);
	send_header(s);
	set_state(s, ST_STREAM_INIT, NULL);
}

static void
on_link_secured(void *arg)
{
	struct session *s = arg;

	if (s->state != ST_TLS) {
		fail(s, "TLS came up in %s", machine[s->state].seed);
		return;
	}
	log_debug("STARTTLS done");
	send_header(s);
	set_state(s, ST_STREAM_INIT, "encrypted");
}

static void
on_link_data(void *arg, const char *data, size_t len)
{
	struct session *s = arg;
	const char *err;

	if (stream_feed(s->stream, data, len, &err) != 0)
		fail(s, "%s", err);
}

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

static size_t
sm_window(const struct session *s)
{
	return s->conf->queue_max > SM_WINDOW_MIN ? s->conf->queue_max :
	    SM_WINDOW_MIN;
}

/* Room to send: up, the link keeps up and the unacked queue has space. */
static int
can_send(const struct session *s)
{
	if (!is_up(s))
		return 0;
	if (sm_counting(s->sm) && sm_unacked(s->sm) >= sm_window(s))
		return 0;
	return link_pending(s->link) < LINK_HIGH_WATER;
}

/* Send queued stanzas while there is room (all of them on shutdown). */
static void
queue_send(struct session *s, int all)
{
	const char *p;
	size_t n = 0, len;

	while ((all || can_send(s)) &&
	    (p = squeue_at(&s->queue, 0, &len, NULL)) != NULL) {
		/* Queued before the limit was known: sending it would only
		 * get the stream closed, again and again. */
		if (s->server_max > 0 && len > s->server_max) {
			log_warn("dropped a queued stanza of %zu bytes: the "
			    "server accepts at most %zu", len, s->server_max);
			report_refused(s, squeue_tag(&s->queue, 0), "too-large",
			    "larger than the server accepts");
		} else {
			send_stanza(s, p, len, SM_CLIENT,
			    squeue_tag(&s->queue, 0));
			n++;
		}
		squeue_drop(&s->queue, 1);
	}
	if (n > 0)
		log_debug("sent %zu queued stanzas", n);
}

static void
queue_flush(struct session *s)
{
	queue_send(s, 0);
	if (squeue_count(&s->queue) == 0)
		set_congested(s, 0);
	if (is_up(s) && squeue_count(&s->queue) > 0 &&
	    sm_counting(s->sm) && sm_unacked(s->sm) >= sm_window(s))
		log_debug("stream management: %zu stanzas unacknowledged, "
		    "waiting for the server", sm_unacked(s->sm));
}

void
session_send(struct session *s, const char *data, size_t len)
{
	if (is_up(s))
		send_stanza(s, data, len, 0, 0);
}

int
session_submit(struct session *s, const char *data, size_t len, uint64_t tag)
{
	if (s->server_max > 0 && len > s->server_max)
		return SESSION_TOO_LARGE;
	if (squeue_count(&s->queue) == 0 && can_send(s)) {
		send_stanza(s, data, len, SM_CLIENT, tag);
		return 0;
	}
	/*
	 * Up, but the link or the unacked queue is full: the clients are
	 * paused, and what their last reads held waits here, past
	 * queue_max if need be (it is bounded by one read per client).
	 */
	if (is_up(s)) {
		squeue_push_tag(&s->queue, data, len, SM_CLIENT, tag);
		set_congested(s, 1);
		return 0;
	}
	if (squeue_count(&s->queue) >= s->conf->queue_max)
		return SESSION_QUEUE_FULL;
	squeue_push_tag(&s->queue, data, len, SM_CLIENT, tag);
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
send_sasl(struct session *s, const char *ns, const char *name,
    const char *mech, struct buf *payload)
{
	struct buf out;

	buf_init(&out);
	buf_printf(&out, "<%s xmlns='%s'", name, ns);
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

/* The channel-binding types this connection makes, as configured. */
static const char *
cb_ours(struct session *s)
{
	if (s->conf->channel_binding == CONF_CB_NO)
		return "";
	return link_cb_types(s->link);
}

/* `require': a login that is not channel-bound is refused. */
static int
cb_required(const struct session *s)
{
	return s->conf->channel_binding == CONF_CB_REQUIRE;
}

/*
 * The channel binding for SCRAM: the best type of XEP-0440's list that
 * this connection can make, with its data in `data' (SASL_CB_MAX bytes);
 * cb->type NULL when there is none.  Whether clawsd could bind at all
 * decides RFC 5802's "y" flag, which only goes to a server that offers no
 * -PLUS: one that does would (rightly) take it for a downgrade.
 */
static void
choose_cb(struct session *s, const char *const *offered, size_t n,
    const char *const *cbtypes, size_t ncb, struct sasl_cb *cb,
    unsigned char *data)
{
	const char *ours;
	int len;

	memset(cb, 0, sizeof(*cb));
	ours = cb_ours(s);
	cb->capable = *ours != '\0' && !sasl_offers_plus(offered, n);
	cb->type = sasl_cb_select(ours, cbtypes, ncb);
	if (cb->type == NULL)
		return;
	len = link_cb_data(s->link, cb->type, data, SASL_CB_MAX);
	if (len <= 0) {
		cb->type = NULL;
		return;
	}
	cb->data = data;
	cb->len = (size_t)len;
}

/* How the login goes, for who wonders whether it was channel-bound. */
static void
log_auth(enum sasl_mech mech, const struct sasl_cb *cb)
{
	if (cb->type != NULL)
		log_debug("SASL: authenticating with %s bound to %s",
		    sasl_mech_name(mech), cb->type);
	else if (sasl_is_scram(mech))
		log_debug("SASL: authenticating with %s, not bound (GS2 flag "
		    "%c)", sasl_mech_name(mech), cb->capable ? 'y' : 'n');
	else
		log_debug("SASL: authenticating with %s", sasl_mech_name(mech));
}

/*
 * The mechanism of sasl_mechanisms to use of the `n' offered (SASL or
 * SASL2 alike), started: its initial response in `initial'.  `cbtypes'
 * are the channel-binding types offered (XEP-0440), for -PLUS and
 * XEP-0474.  SASL_NONE when the connection has failed.
 */
static enum sasl_mech
sasl_begin(struct session *s, const char **offered, size_t n,
    const char **cbtypes, size_t ncb, struct buf *initial)
{
	unsigned char cbdata[SASL_CB_MAX];
	enum sasl_mech mech;
	struct sasl_cb cb;
	int rc;

	choose_cb(s, offered, n, cbtypes, ncb, &cb, cbdata);
	mech = sasl_select(s->conf->sasl_mechanisms, offered, n,
	    link_encrypted(s->link), cb.type != NULL);
	if (!sasl_is_plus(mech))
		cb.type = NULL;
	if (mech != SASL_NONE && !sasl_is_plus(mech) && cb_required(s)) {
		/* As a wrong password: a man in the middle stays there. */
		end_connection(s, END_AUTH, "SASL: channel_binding = require, "
		    "but the server offers no SCRAM-*-PLUS with a "
		    "channel-binding type clawsd can make (a man in the "
		    "middle?)");
		return SASL_NONE;
	}
	if (mech != SASL_NONE && s->scram_pinned && !sasl_is_scram(mech)) {
		fail(s, "SASL: SCRAM was used with this server before, "
		    "refusing to fall back to PLAIN");
		return SASL_NONE;
	}
	if (mech == SASL_NONE) {
		fail(s, n == 0 ? "SASL: the server offers no mechanism" :
		    "SASL: no mechanism in sasl_mechanisms is offered "
		    "(PLAIN needs TLS)");
		return SASL_NONE;
	}
	rc = sasl_start_cb(&s->sasl, mech, s->conf->user, s->conf->password,
	    NULL, &cb, initial);
	mbedtls_platform_zeroize(cbdata, sizeof(cbdata));
	if (rc == 0) {
		sasl_set_cache(&s->sasl, &s->sasl_cache);
		/* XEP-0474: what the server offered, to check for downgrade. */
		rc = sasl_set_offered(&s->sasl, offered, n, cbtypes, ncb);
	}
	if (rc != 0) {
		wipe(initial);
		fail(s, "SASL: cannot start");
		return SASL_NONE;
	}
	log_auth(mech, &cb);
	return mech;
}

static size_t
channel_bindings(const struct xnode *features, const char ***out)
{
	return children_text(features, "sasl-channel-binding", NS_SASL_CB,
	    "channel-binding", "type", out);
}

static void
start_auth(struct session *s, const struct xnode *features)
{
	const char **offered = NULL, **cbtypes = NULL;
	size_t n, ncb;
	enum sasl_mech mech;
	struct buf initial;

	n = children_text(features, "mechanisms", NS_SASL, "mechanism",
	    NULL, &offered);
	ncb = channel_bindings(features, &cbtypes);
	buf_init(&initial);
	if ((mech = sasl_begin(s, offered, n, cbtypes, ncb, &initial)) !=
	    SASL_NONE) {
		send_sasl(s, NS_SASL, "auth", sasl_mech_name(mech), &initial);
		set_state(s, ST_AUTHENTICATE, sasl_mech_name(mech));
	}
	buf_free(&initial);
	free(offered);
	free(cbtypes);
}

/* Does `parent' have an `item' child of `ns' with this text (or `attr')? */
static int
offers(const struct xnode *parent, const char *ns, const char *item,
    const char *attr, const char *value)
{
	const struct xnode *c;
	const char *v;

	if (parent == NULL)
		return 0;
	for (c = parent->child; c != NULL; c = c->next) {
		if (!xnode_is(c, item, ns))
			continue;
		v = attr ? xnode_attr(c, attr) : xnode_text((struct xnode *)c);
		if (v != NULL && strcmp(v, value) == 0)
			return 1;
	}
	return 0;
}

/*
 * What goes inline in <authenticate/>: an XEP-0198 resume when there is a
 * session to resume; Bind2 (with XEP-0198 enable) for a new one, also when
 * the resume fails; a FAST token request unless one is used.
 */
static void
auth2_inline(struct session *s, const struct xnode *in, int use_fast,
    const char **ht, size_t nht, struct buf *b)
{
	const struct xnode *bind = xnode_child(in, "bind", NS_BIND2);
	const struct xnode *bin = bind ? xnode_child(bind, "inline",
	    NS_BIND2) : NULL;
	const char *id = sm_resume_id(s->sm), *mech;
	int sm = s->conf->stream_management;

	s->asked = 0;
	if (sm && id != NULL && s->jid != NULL &&
	    xnode_child(in, "sm", NS_SM) != NULL) {
		buf_printf(b, "<resume xmlns='" NS_SM "' h='%lu' previd=\"",
		    (unsigned long)sm_handled(s->sm));
		xmlw_attr(b, id, strlen(id));
		buf_puts(b, "\"/>");
		s->asked |= ASK_RESUME;
	}
	if (bind != NULL) {
		buf_puts(b, "<bind xmlns='" NS_BIND2 "'><tag>");
		xmlw_text(b, s->conf->resource, strlen(s->conf->resource));
		buf_puts(b, "</tag>");
		if (sm && offers(bin, NS_BIND2, "feature", "var", NS_SM)) {
			buf_puts(b, "<enable xmlns='" NS_SM "' resume='true'/>");
			s->asked |= ASK_ENABLE;
		}
		buf_puts(b, "</bind>");
		s->asked |= ASK_BIND;
	}
	if (use_fast)
		buf_puts(b, "<fast xmlns='" NS_FAST "'/>");
	else if ((mech = fast_choose(ht, nht, cb_ours(s), cb_required(s))) !=
	    NULL) {
		buf_puts(b, "<request-token xmlns='" NS_FAST "'");
		xmlw_attr_pair(b, "mechanism", mech);
		buf_puts(b, "/>");
		s->asked |= ASK_TOKEN;
		s->token_mech = mech;
	}
}

/*
 * The channel-binding data the token's mechanism proves, in `data'
 * (SASL_CB_MAX bytes): its length, 0 for none, or -1.
 */
static int
fast_cb(struct session *s, unsigned char *data)
{
	const char *type = fast_cb_type(fast_mech(s->fast));

	if (type == NULL)
		return -1;
	if (*type == '\0')
		return 0;
	return link_cb_data(s->link, type, data, SASL_CB_MAX);
}

/* The token's initial response.  0, or -1. */
static int
fast_begin(struct session *s, struct buf *initial)
{
	unsigned char cb[SASL_CB_MAX];
	int len = fast_cb(s, cb), rc = -1;

	if (len >= 0)
		rc = fast_initial(s->fast, s->conf->user, cb, (size_t)len,
		    initial);
	mbedtls_platform_zeroize(cb, sizeof(cb));
	return rc;
}

/* The server's answer to the token's proof: 0 when it knew the token. */
static int
fast_check(struct session *s, const char *data, size_t len)
{
	unsigned char cb[SASL_CB_MAX];
	int cblen = fast_cb(s, cb), rc = -1;

	if (cblen >= 0)
		rc = fast_verify(s->fast, cb, (size_t)cblen, data, len);
	mbedtls_platform_zeroize(cb, sizeof(cb));
	return rc;
}

/*
 * The initial response: a FAST token's, where its mechanism is the best of
 * those offered (`ht') that this connection can prove, or SCRAM's (the
 * password's).
 */
static int
auth2_begin(struct session *s, const struct xnode *features,
    const char **ht, size_t nht, struct buf *initial, const char **name)
{
	const char **offered = NULL, **cbtypes = NULL;
	enum sasl_mech mech;
	size_t n, ncb;
	int rc = -1;

	if (fast_usable(s->fast, ht, nht, cb_ours(s), cb_required(s))) {
		*name = fast_mech(s->fast);
		if (fast_begin(s, initial) == 0)
			return 1;
		fail(s, "FAST: cannot compute the token's proof");
		return -1;
	}
	n = children_text(features, "authentication", NS_SASL2, "mechanism",
	    NULL, &offered);
	ncb = channel_bindings(features, &cbtypes);
	if ((mech = sasl_begin(s, offered, n, cbtypes, ncb, initial)) !=
	    SASL_NONE) {
		*name = sasl_mech_name(mech);
		rc = 0;
	}
	free(offered);
	free(cbtypes);
	return rc;
}

/*
 * SASL2 (XEP-0388): one <authenticate/> with the user agent and what
 * goes inline, so that a login (or a resume) costs one round trip more
 * than the mechanism's own.
 */
static void
start_auth2(struct session *s, const struct xnode *features)
{
	const struct xnode *auth = xnode_child(features, "authentication",
	    NS_SASL2);
	const struct xnode *in = xnode_child(auth, "inline", NS_SASL2);
	const char *name, *id = fast_client_id(s->fast), **ht = NULL;
	char detail[64];
	struct buf initial, b;
	size_t nht = 0;
	int use_fast;

	if (in != NULL)
		nht = children_text(in, "fast", NS_FAST, "mechanism", NULL,
		    &ht);
	buf_init(&initial);
	buf_init(&b);
	if ((use_fast = auth2_begin(s, features, ht, nht, &initial, &name)) <
	    0)
		goto out;
	buf_puts(&b, "<authenticate xmlns='" NS_SASL2 "'");
	xmlw_attr_pair(&b, "mechanism", name);
	buf_puts(&b, "><initial-response>");
	if (initial.len == 0)
		buf_putc(&b, '=');
	else
		b64_encode(&b, &initial);
	buf_puts(&b, "</initial-response><user-agent");
	xmlw_attr_pair(&b, "id", id);
	buf_puts(&b, "><software>clawsd</software></user-agent>");
	if (in != NULL)
		auth2_inline(s, in, use_fast, ht, nht, &b);
	else
		s->asked = 0;
	buf_puts(&b, "</authenticate>");
	send_raw(s, b.data, b.len);
	snprintf(detail, sizeof(detail), "SASL2 %s", name);
	set_state(s, use_fast ? ST_FAST : ST_AUTHENTICATE2, detail);
out:
	free(ht);
	wipe(&initial);
	buf_free(&initial);
	wipe(&b);
	buf_free(&b);
}

static void
sasl_respond(struct session *s, int rc, struct buf *out, const char *err)
{
	if (rc == 0)
		send_sasl(s, s->state == ST_AUTHENTICATE2 ? NS_SASL2 : NS_SASL,
		    "response", NULL, out);
	buf_free(out);
	if (rc != 0)
		fail(s, "SASL: %s", err);
}

/* SaltedPassword is ready: the proof can go. */
static void
on_key(void *arg, struct sasl_hi *hi)
{
	struct session *s = arg;
	const char *err = NULL;
	struct buf out;
	int rc;

	s->kdf = NULL;
	buf_init(&out);
	rc = sasl_step_end(&s->sasl, hi, &out, &err);
	sasl_respond(s, rc, &out, err);
}

static void
on_challenge(struct session *s, const struct stream_elem *el)
{
	struct xnode *e = el->tree;
	struct sasl_hi *hi = NULL;
	struct buf in, out;
	const char *err = "malformed challenge";
	int rc = -1, uverr;

	buf_init(&in);
	buf_init(&out);
	if (b64_decode(&in, xnode_text(e)) == 0)
		rc = sasl_step_begin(&s->sasl, in.data ? in.data : "", in.len,
		    &out, &hi, &err);
	wipe(&in);
	buf_free(&in);
	/* PBKDF2 goes to the pool: the loop carries on meanwhile. */
	if (rc == 1 && (s->kdf = kdf_start(s->loop, hi, on_key, s,
	    &uverr)) != NULL) {
		log_debug("SASL: computing the key on the thread pool");
		buf_free(&out);
		return;
	}
	if (rc == 1) {
		rc = -1;
		err = uv_strerror(uverr);
	}
	sasl_respond(s, rc, &out, err);
}

static void
on_success(struct session *s, const struct stream_elem *el)
{
	struct xnode *e = el->tree;
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
	send_header(s);
	set_state(s, ST_BIND, NULL);
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
on_sasl_failure(struct session *s, const struct stream_elem *el)
{
	const struct xnode *e = el->tree;
	char reason[256];

	describe_error(e, NS_SASL, "SASL failure: ", reason, sizeof(reason));
	/* A failed SCRAM must not be retried with something weaker. */
	if (sasl_is_scram(s->sasl.mech))
		s->scram_pinned = 1;
	sasl_cache_clear(&s->sasl_cache);
	/* A wrong password stays wrong: do not hammer the server. */
	end_connection(s, END_AUTH, reason);
}

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

#define STARTTLS	"<starttls xmlns='" NS_TLS "'/>"

/* The first features: STARTTLS unless the stream is secure, then SASL. */
static void
on_features_tls(struct session *s, const struct stream_elem *e)
{
	stream_limits(s, e->tree);
	if (link_encrypted(s->link) &&
	    xnode_child(e->tree, "authentication", NS_SASL2) != NULL) {
		start_auth2(s, e->tree);
		return;
	}
	if (link_encrypted(s->link) || s->conf->tls == CONF_TLS_NONE) {
		start_auth(s, e->tree);
		return;
	}
	if (xnode_child(e->tree, "starttls", NS_TLS) == NULL) {
		fail(s, "TLS: the server does not offer STARTTLS");
		return;
	}
	send_raw(s, STARTTLS, sizeof(STARTTLS) - 1);
	set_state(s, ST_STARTTLS, NULL);
}

static void
on_proceed(struct session *s, const struct stream_elem *e)
{
	/* Whatever followed <proceed/> in plaintext is dropped. */
	stream_reset(s->stream);
	set_state(s, ST_TLS, NULL);
	link_starttls(s->link);
}

static void
on_tls_failure(struct session *s, const struct stream_elem *e)
{
	fail(s, "TLS: the server refused STARTTLS");
}

/* An h attribute: a decimal number below 2^32 (XEP-0198 4). */
static int
parse_h(const char *text, uint32_t *h)
{
	unsigned long long v;
	char *end;

	if (text == NULL || text[0] < '0' || text[0] > '9' ||
	    strlen(text) > 10)
		return -1;
	v = strtoull(text, &end, 10);
	if (*end != '\0' || v > UINT32_MAX)
		return -1;
	*h = (uint32_t)v;
	return 0;
}

static void
send_bind(struct session *s)
{
	if (!s->can_bind) {
		protocol_error(s, "the server offers no resource binding");
		return;
	}
	/* A new session: what the old one did not confirm goes out again. */
	sm_forget(s->sm, &s->queue);
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
send_resume(struct session *s)
{
	const char *id = sm_resume_id(s->sm);

	s->scratch.len = 0;
	buf_printf(&s->scratch, "<resume xmlns='" NS_SM "' h='%lu' previd=\"",
	    (unsigned long)sm_handled(s->sm));
	xmlw_attr(&s->scratch, id, strlen(id));
	buf_puts(&s->scratch, "\"/>");
	send_buf(s, &s->scratch);
	set_state(s, ST_RESUMING, NULL);
}

/* The features of the restarted stream: resume, or bind a new session. */
static void
on_features_bind(struct session *s, const struct stream_elem *e)
{
	const struct xnode *f = e->tree;
	const struct xnode *sess = xnode_child(f, "session", NS_SESSION);

	stream_limits(s, f);
	/* RFC 3921 sessions, only where the server still needs them. */
	s->session_required = sess != NULL &&
	    xnode_child(sess, "optional", NS_SESSION) == NULL;
	s->can_bind = xnode_child(f, "bind", NS_BIND) != NULL;
	s->sm_offered = s->conf->stream_management &&
	    xnode_child(f, "sm", NS_SM) != NULL;
	if (s->sm_offered && sm_resume_id(s->sm) != NULL && s->jid != NULL) {
		send_resume(s);
		return;
	}
	send_bind(s);
}

static void on_ping_timer(uv_timer_t *);

/* Keepalive: look for silence every ping_interval. */
static void
arm_keepalive(struct session *s, uint64_t ms)
{
	if (s->conf->ping_interval > 0)
		arm(&s->ping_timer, on_ping_timer, ms);
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
	log_debug("ping: %u s of silence from the server",
	    s->conf->ping_interval);
}

/*
 * Silence is time without a whole element from the server (a stanza
 * trickled byte by byte is silence too).  Only the pong answers a ping
 * (SPEC 2): an outstanding one at the timeout is a dead connection.
 */
static void
on_ping_timer(uv_timer_t *t)
{
	struct session *s = t->data;
	uint64_t now = uv_now(s->loop);
	uint64_t interval = (uint64_t)s->conf->ping_interval * 1000;

	if (!is_up(s))
		return;
	if (s->ping_id != NULL) {
		/*
		 * A resumed session that never answered anything, an ack or
		 * the ping, may be one the server cannot serve any more
		 * (seen with Prosody 13): resuming it again would send the
		 * same stanzas into it forever.  A new session gets them.
		 */
		if (s->unanswered) {
			log_warn("stream management: the resumed session "
			    "never answered; binding a new one next time");
			sm_forget(s->sm, &s->queue);
		}
		fail(s, "ping timeout (%u s)", s->conf->ping_timeout);
		return;
	}
	if (now - s->last_rx < interval) {
		arm_keepalive(s, interval - (now - s->last_rx));
		return;
	}
	send_ping(s);
	arm(&s->ping_timer, on_ping_timer,
	    (uint64_t)s->conf->ping_timeout * 1000);
}

/* The state's detail once up: "as JID". */
static void
up_detail(const struct session *s, char *detail, size_t size)
{
	snprintf(detail, size, "as %s", s->jid);
}

/* Up: BINDED, or UP2 until the features SASL2 success owes. */
static void
up(struct session *s, int resumed, enum state next)
{
	char detail[JID_MAX + 8];

	uv_timer_stop(&s->handshake);
	s->last_rx = uv_now(s->loop);
	arm_keepalive(s, (uint64_t)s->conf->ping_interval * 1000);
	up_detail(s, detail, sizeof(detail));
	set_state(s, next, detail);
	log_info("session %s as %s", resumed ? "resumed" : "established",
	    s->jid);
	status_connected(s, resumed);
	if (s->cb->bound != NULL)
		s->cb->bound(s->arg, resumed);
	queue_flush(s);
}

#define SM_ENABLE	"<enable xmlns='" NS_SM "' resume='true'/>"

/* A new session is bound: initial presence, and up. */
static void
announce(struct session *s, enum state next)
{
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
	up(s, 0, next);
}

static void
established(struct session *s)
{
	if (s->sm_offered) {
		send_raw(s, SM_ENABLE, sizeof(SM_ENABLE) - 1);
		sm_enable(s->sm);
	}
	announce(s, ST_BINDED);
}

/* <resumed/>: the server has h of ours; the rest goes again, in order. */
static void
resumed(struct session *s, const struct xnode *e, enum state next)
{
	const char *h = xnode_attr(e, "h"), *why, *p;
	uint32_t n;
	size_t i, len;

	if (parse_h(h, &n) != 0) {
		protocol_error(s, "stream management: <resumed/> without a "
		    "valid h");
		return;
	}
	if (sm_resumed(s->sm, n, &why) != 0) {
		/* Its counts are not to be trusted: a new session, and
		 * every unacknowledged stanza goes again. */
		sm_forget(s->sm, &s->queue);
		protocol_error(s, "stream management: <resumed h='%lu'/>: %s",
		    (unsigned long)n, why);
		return;
	}
	for (i = 0; (p = sm_unacked_at(s->sm, i, &len)) != NULL; i++)
		send_raw(s, p, len);
	if (i > 0)
		log_info("stream management: resent %zu unacknowledged "
		    "stanzas", i);
	request_ack(s);
	s->unanswered = 1;
	up(s, 1, next);
}

static void
on_resumed(struct session *s, const struct stream_elem *e)
{
	resumed(s, e->tree, ST_BINDED);
}

/* <failed/> to <resume/>: the reason in the log, for a new session. */
static void
resume_refused(struct session *s, const struct xnode *e)
{
	const char *h = xnode_attr(e, "h"), *why;
	char reason[256];
	uint32_t n;

	describe_error(e, NS_STANZAS, "", reason, sizeof(reason));
	log_info("stream management: the server cannot resume the session "
	    "(%s%s%s), binding a new one", reason, h ? ", h=" : "",
	    h ? h : "");
	/* What it says it has of ours is not sent again. */
	if (h != NULL && (parse_h(h, &n) != 0 ||
	    sm_acked(s->sm, n, &why) != 0))
		log_warn("stream management: ignored the h of <failed/>: %s",
		    parse_h(h, &n) != 0 ? "not a number" : why);
}

static void
on_resume_failed(struct session *s, const struct stream_elem *e)
{
	resume_refused(s, e->tree);
	send_bind(s);
}

/* <enabled/>: counting, and resumable when it says so.  0, or -1. */
static int
enabled(struct session *s, const struct xnode *e)
{
	const char *resume = xnode_attr(e, "resume");
	const char *id = NULL;

	if (resume != NULL && (strcmp(resume, "true") == 0 ||
	    strcmp(resume, "1") == 0))
		id = xnode_attr(e, "id");
	if (sm_enabled(s->sm, id) != 0) {
		protocol_error(s, "stream management: <enabled/> without "
		    "<enable/>");
		return -1;
	}
	log_info("stream management enabled%s", id ? " (resumable)" : "");
	return 0;
}

static void
on_enabled(struct session *s, const struct stream_elem *e)
{
	(void)enabled(s, e->tree);
}

static void
on_enable_failed(struct session *s, const struct stream_elem *e)
{
	size_t i, before = s->nrcpt;

	/* What was sent meanwhile gets its receipt from a ping instead. */
	for (i = 0; i < sm_unacked(s->sm); i++)
		if (sm_unacked_tag(s->sm, i) != 0)
			receipt_wait(s, sm_unacked_tag(s->sm, i));
	if (sm_enable_failed(s->sm) != 0) {
		s->nrcpt = before;
		protocol_error(s, "stream management: <failed/> without "
		    "<enable/>");
		return;
	}
	log_warn("stream management: the server refused to enable it");
	receipt_ping(s);
}

static void
on_r(struct session *s, const struct stream_elem *e)
{
	/* Only a stream that enabled it answers: XEP-0198 4. */
	if (!sm_on(s->sm)) {
		protocol_error(s, "stream management: <r/> while it is not "
		    "enabled");
		return;
	}
	s->scratch.len = 0;
	buf_printf(&s->scratch, "<a xmlns='" NS_SM "' h='%lu'/>",
	    (unsigned long)sm_handled(s->sm));
	send_buf(s, &s->scratch);
}

static void
on_r_closed(struct session *s, const struct stream_elem *e)
{
	log_debug("stream management: <r/> after our stream was closed: "
	    "not answered");
}

static void
on_a(struct session *s, const struct stream_elem *e)
{
	const char *h = xnode_attr(e->tree, "h"), *why;
	size_t unacked;
	uint32_t n;

	if (!sm_on(s->sm)) {
		protocol_error(s, "stream management: <a/> while it is not "
		    "enabled");
		return;
	}
	if (parse_h(h, &n) != 0) {
		protocol_error(s, "stream management: <a/> without a valid h");
		return;
	}
	if (sm_acked(s->sm, n, &why) != 0) {
		unacked = sm_unacked(s->sm);
		/* Its counts are not to be trusted: a new session, and
		 * every unacknowledged stanza goes again. */
		sm_forget(s->sm, &s->queue);
		protocol_error(s, "stream management: <a h='%lu'/> with %zu "
		    "unacknowledged: %s", (unsigned long)n, unacked, why);
		return;
	}
	s->unanswered = 0;
	request_ack(s);
	queue_flush(s);
}

/* RFC 6120 7.6.3: our own bare JID and a resource, nothing else. */
static int
our_jid(const struct session *s, const char *jid)
{
	size_t ul = strlen(s->conf->user), dl = strlen(s->conf->domain);
	const unsigned char *r;

	if (strlen(jid) > JID_MAX || strncasecmp(jid, s->conf->user, ul) != 0 ||
	    jid[ul] != '@' ||
	    strncasecmp(jid + ul + 1, s->conf->domain, dl) != 0 ||
	    jid[ul + 1 + dl] != '/' || jid[ul + 2 + dl] == '\0')
		return 0;
	for (r = (const unsigned char *)jid + ul + 2 + dl; *r != '\0'; r++)
		if (*r < 0x20 || *r == 0x7f)
			return 0;
	return 1;
}

static int
is_id(const char *id, const char *ours)
{
	return id != NULL && ours != NULL && strcmp(id, ours) == 0;
}

static void
on_bind_result(struct session *s, const struct stream_elem *e)
{
	struct xnode *iq = e->tree;
	const char *type = xnode_attr(iq, "type");
	const struct xnode *bind, *jid;
	const char *text;
	char reason[256];

	if (!is_id(xnode_attr(iq, "id"), s->bind_id)) {
		protocol_error(s, "an <iq/> that is not the bind result in "
		    "Binding");
		return;
	}
	if (type != NULL && strcmp(type, "error") == 0) {
		describe_error(xnode_child(iq, "error", NS_CLIENT) ?
		    xnode_child(iq, "error", NS_CLIENT) : iq, NS_STANZAS,
		    "bind: ", reason, sizeof(reason));
		fail(s, "%s", reason);
		return;
	}
	bind = xnode_child(iq, "bind", NS_BIND);
	jid = bind ? xnode_child(bind, "jid", NS_BIND) : NULL;
	text = jid ? xnode_text((struct xnode *)jid) : "";
	if (type == NULL || strcmp(type, "result") != 0 || text[0] == '\0') {
		protocol_error(s, "bind: no JID in the result");
		return;
	}
	if (!our_jid(s, text)) {
		protocol_error(s, "bind: the server bound a JID that is not "
		    "%s@%s/resource", s->conf->user, s->conf->domain);
		return;
	}
	free(s->jid);
	s->jid = xstrdup(text);
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
	set_state(s, ST_SESSION, NULL);
}

static void
on_session_result(struct session *s, const struct stream_elem *e)
{
	const char *type = xnode_attr(e->tree, "type");

	if (!is_id(xnode_attr(e->tree, "id"), s->session_id)) {
		on_iq(s, e);
		return;
	}
	free(s->session_id);
	s->session_id = NULL;
	if (type == NULL || strcmp(type, "result") != 0) {
		fail(s, "session: refused by the server");
		return;
	}
	established(s);
}

/*
 * SASL2 <success/>.  Its parts are checked against what <authenticate/>
 * asked for: the proof that the server knows the password (or the token),
 * our JID, and the result of the resume or of Bind2.
 */

/* The server's proof, in <additional-data/>.  0, or -1 (failed). */
static int
auth2_proof(struct session *s, const struct xnode *e)
{
	const struct xnode *ad = xnode_child(e, "additional-data", NS_SASL2);
	const char *err = "malformed additional data";
	struct buf in;
	int rc = -1;

	buf_init(&in);
	if (b64_decode(&in, ad ? xnode_text((struct xnode *)ad) : "=") == 0) {
		if (s->state == ST_FAST) {
			err = "FAST: the server did not prove it knows the "
			    "token";
			rc = fast_check(s, in.data, in.len);
		} else
			rc = sasl_finish(&s->sasl, in.data ? in.data : "",
			    in.len, &err);
	}
	wipe(&in);
	buf_free(&in);
	if (rc != 0)
		fail(s, "SASL2: %s", err);
	return rc;
}

/* RFC 7622: our bare JID, or our full JID. */
static int
our_bare_or_full(const struct session *s, const char *jid)
{
	size_t ul = strlen(s->conf->user);

	if (strncasecmp(jid, s->conf->user, ul) == 0 && jid[ul] == '@' &&
	    strcasecmp(jid + ul + 1, s->conf->domain) == 0)
		return 1;
	return our_jid(s, jid);
}

/* Nothing in <success/> that was not asked for.  0, or -1 (failed). */
static int
auth2_asked(struct session *s, const struct xnode *e)
{
	unsigned got = 0;

	if (xnode_child(e, "resumed", NS_SM) != NULL ||
	    xnode_child(e, "failed", NS_SM) != NULL)
		got |= ASK_RESUME;
	if (xnode_child(e, "bound", NS_BIND2) != NULL ||
	    xnode_child(e, "failed", NS_BIND2) != NULL)
		got |= ASK_BIND;
	/* A token comes unasked when the one used is rotated. */
	if (xnode_child(e, "token", NS_FAST) != NULL && s->state != ST_FAST)
		got |= ASK_TOKEN;
	if ((got & ~s->asked) != 0 || (xnode_child(e, "resumed", NS_SM) &&
	    (got & ASK_BIND))) {
		protocol_error(s, "SASL2: <success/> answers what was not "
		    "asked for");
		return -1;
	}
	return 0;
}

/* A FAST token: asked for, or a rotation of the one used. */
static void
take_token(struct session *s, const struct xnode *t)
{
	const char *mech = s->state == ST_FAST ? fast_mech(s->fast) :
	    s->token_mech;

	if (fast_set(s->fast, mech, xnode_attr(t, "token")) != 0) {
		log_warn("FAST: the server's token is not one clawsd can use: "
		    "ignored");
		return;
	}
	log_info("FAST: %s token (expires %s)", s->state == ST_FAST ?
	    "a new" : "got a", xnode_attr(t, "expiry") ? xnode_attr(t,
	    "expiry") : "never");
}

/* Bind2 bound a new session, with XEP-0198 when it says so. */
static void
bound2(struct session *s, const struct xnode *bound, const char *jid)
{
	const struct xnode *en = xnode_child(bound, "enabled", NS_SM);

	if (!our_jid(s, jid)) {
		protocol_error(s, "Bind2: the server bound a JID that is not "
		    "%s@%s/resource", s->conf->user, s->conf->domain);
		return;
	}
	free(s->jid);
	s->jid = xstrdup(jid);
	/* A new session: what the old one did not confirm goes out again. */
	sm_forget(s->sm, &s->queue);
	if (en != NULL && (s->asked & ASK_ENABLE)) {
		sm_enable(s->sm);
		if (enabled(s, en) != 0)
			return;
	} else if (s->asked & ASK_ENABLE)
		log_warn("stream management: the server refused to enable it");
	announce(s, ST_UP2);
}

static void
on_success2(struct session *s, const struct stream_elem *el)
{
	const struct xnode *e = el->tree;
	const struct xnode *authz = xnode_child(e, "authorization-identifier",
	    NS_SASL2);
	const struct xnode *r = xnode_child(e, "resumed", NS_SM);
	const struct xnode *bound = xnode_child(e, "bound", NS_BIND2);
	const struct xnode *t = xnode_child(e, "token", NS_FAST), *x;
	const char *jid = authz ? xnode_text((struct xnode *)authz) : "";
	char reason[256];

	if (auth2_proof(s, e) != 0 || auth2_asked(s, e) != 0)
		return;
	if (!our_bare_or_full(s, jid)) {
		protocol_error(s, "SASL2: the authorization identifier is not "
		    "%s@%s", s->conf->user, s->conf->domain);
		return;
	}
	log_info("authenticated as %s@%s with %s (SASL2)%s", s->conf->user,
	    s->conf->domain, s->state == ST_FAST ? fast_mech(s->fast) :
	    sasl_mech_name(s->sasl.mech),
	    sasl_cache_hit(&s->sasl) ? " (cached key)" : "");
	if (s->state == ST_AUTHENTICATE2 && sasl_is_scram(s->sasl.mech))
		s->scram_pinned = 1;
	sasl_clear(&s->sasl);
	if (t != NULL)
		take_token(s, t);
	/* The limit before authentication is over; the features tell. */
	s->server_max = 0;
	if (r != NULL) {
		resumed(s, r, ST_UP2);
		return;
	}
	if ((x = xnode_child(e, "failed", NS_SM)) != NULL)
		resume_refused(s, x);
	if ((x = xnode_child(e, "failed", NS_BIND2)) != NULL) {
		describe_error(x, NS_STANZAS, "Bind2: ", reason,
		    sizeof(reason));
		fail(s, "%s", reason);
		return;
	}
	if (bound != NULL) {
		bound2(s, bound, jid);
		return;
	}
	/* No Bind2: the features that follow offer RFC 6120 binding. */
	set_state(s, ST_BIND, NULL);
}

/*
 * <continue/>: the server wants tasks done before the login completes
 * (XEP-0388 2.5: a password change, a second factor).  A daemon has no one
 * to do them: as a wrong password, retried after the longest wait.
 */
static void
on_continue2(struct session *s, const struct stream_elem *el)
{
	const struct xnode *tasks = xnode_child(el->tree, "tasks", NS_SASL2);
	const struct xnode *text = xnode_child(el->tree, "text", NS_SASL2);
	const struct xnode *t;
	char reason[256];
	size_t n;

	n = (size_t)snprintf(reason, sizeof(reason), "SASL2: the server asks "
	    "for tasks clawsd cannot do:");
	for (t = tasks ? tasks->child : NULL; t != NULL; t = t->next)
		if (xnode_is(t, "task", NS_SASL2) && n < sizeof(reason))
			n += (size_t)snprintf(reason + n, sizeof(reason) - n,
			    " %s", xnode_text((struct xnode *)t));
	if (text != NULL && n < sizeof(reason))
		snprintf(reason + n, sizeof(reason) - n, " (%s)",
		    xnode_text((struct xnode *)text));
	end_connection(s, END_AUTH, reason);
}

/* The token was refused: forget it, and log in with the password. */
static void
on_fast_failure(struct session *s, const struct stream_elem *e)
{
	char reason[256];

	describe_error(e->tree, NS_SASL, "FAST token refused: ", reason,
	    sizeof(reason));
	fast_drop(s->fast);
	end_connection(s, END_AGAIN, reason);
}

/* Owed by SASL2 success: now the limits of the authenticated stream. */
static void
on_features_up2(struct session *s, const struct stream_elem *e)
{
	char detail[JID_MAX + 8];

	stream_limits(s, e->tree);
	up_detail(s, detail, sizeof(detail));
	set_state(s, ST_BINDED, detail);
}

/* The server speaks as the domain, or for our account (the bare JID). */
static int
from_server(const struct session *s, const char *from)
{
	size_t ul = strlen(s->conf->user), dl = strlen(s->conf->domain);

	if (from == NULL || strcasecmp(from, s->conf->domain) == 0)
		return 1;
	return strncasecmp(from, s->conf->user, ul) == 0 && from[ul] == '@' &&
	    strncasecmp(from + ul + 1, s->conf->domain, dl) == 0 &&
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
	if (!is_up(s))
		return 1;	/* our stream is closed: no answer */
	s->scratch.len = 0;
	buf_puts(&s->scratch, "<iq type='result'");
	xmlw_attr_pair(&s->scratch, "id", id);
	if (from != NULL)
		xmlw_attr_pair(&s->scratch, "to", from);
	buf_puts(&s->scratch, "/>");
	send_buf(s, &s->scratch);
	return 1;
}

/* To the hub, with what it routes and filters by. */
static void
relay(struct session *s, const struct stream_elem *e)
{
	struct head h;

	h.line = e->line;
	h.len = e->len;
	h.kind = !e->stanza ? HEAD_OTHER : strcmp(e->name, "message") == 0 ?
	    HEAD_MESSAGE : strcmp(e->name, "presence") == 0 ? HEAD_PRESENCE :
	    HEAD_IQ;
	h.type = e->type;
	h.id = e->id;
	h.from = e->from;
	s->cb->line(s->arg, &h);
}

/* The answer to our ping: a result or an error, with its id. */
static int
pong(struct session *s, struct xnode *iq)
{
	const char *type = xnode_attr(iq, "type");

	if (!is_id(xnode_attr(iq, "id"), s->ping_id) || type == NULL ||
	    (strcmp(type, "result") != 0 && strcmp(type, "error") != 0) ||
	    !from_server(s, xnode_attr(iq, "from")))
		return 0;
	free(s->ping_id);
	s->ping_id = NULL;
	s->unanswered = 0;
	arm_keepalive(s, (uint64_t)s->conf->ping_interval * 1000);
	return 1;
}

/* The answer to a receipt ping (a result, or an error all the same). */
static int
receipt_answer(struct session *s, struct xnode *iq)
{
	if (!is_id(xnode_attr(iq, "id"), s->rcpt_id) ||
	    !from_server(s, xnode_attr(iq, "from")))
		return 0;
	receipt_pong(s);
	return 1;
}

static void
on_iq(struct session *s, const struct stream_elem *e)
{
	if (pong(s, e->tree) || server_ping(s, e->tree) ||
	    receipt_answer(s, e->tree))
		return;
	relay(s, e);
}

static void
on_relay(struct session *s, const struct stream_elem *e)
{
	relay(s, e);
}

/*
 * see-other-host (RFC 6120 4.9.3.19): followed a few times per attempt,
 * only from a stream that is encrypted (the redirect could come from
 * anyone on the path otherwise) or, with tls = none, to loopback.
 */
static int
follow_redirect(struct session *s, const char *to, char *why, size_t size)
{
	char host[256];
	int port = 0;

	redirect_target(to, host, sizeof(host), &port);
	if (s->redirects >= MAX_REDIRECTS) {
		snprintf(why, size, "not followed: %d redirects already in "
		    "this attempt", s->redirects);
		return 0;
	}
	if (!link_encrypted(s->link) && (s->conf->tls != CONF_TLS_NONE ||
	    !conf_is_loopback(host))) {
		snprintf(why, size, "not followed: %s",
		    s->conf->tls == CONF_TLS_NONE ? "not a loopback host "
		    "(tls = none)" : "the stream is not encrypted yet");
		return 0;
	}
	s->redirects++;
	free(s->redirect);
	s->redirect = xstrdup(to);
	return 1;
}

static void
on_stream_error(struct session *s, const struct stream_elem *e)
{
	const struct xnode *other = xnode_child(e->tree, "see-other-host",
	    NS_STREAM_ERR);
	char reason[256], why[128];

	describe_error(e->tree, NS_STREAM_ERR, "stream error: ", reason,
	    sizeof(reason));
	if (other != NULL && xnode_text((struct xnode *)other)[0] != '\0') {
		if (follow_redirect(s, xnode_text((struct xnode *)other), why,
		    sizeof(why))) {
			log_info("the server redirects to %s (redirect %d of "
			    "at most %d)", s->redirect, s->redirects,
			    MAX_REDIRECTS);
			end_connection(s, END_REDIRECT, reason);
			return;
		}
		log_warn("see-other-host %s: %s",
		    xnode_text((struct xnode *)other), why);
	}
	if (xnode_child(e->tree, "conflict", NS_STREAM_ERR) != NULL) {
		end_connection(s, END_CONFLICT, reason);
		return;
	}
	fail(s, "%s", reason);
}

static void
on_closed_by_server(struct session *s, const struct stream_elem *e)
{
	fail(s, "stream closed by the server");
}

static void
on_closed_reload(struct session *s, const struct stream_elem *e)
{
	reopen(s, 1);
}

static void
on_closed_stop(struct session *s, const struct stream_elem *e)
{
	log_info("stream closed");
	finish_stop(s);
}

/* Stream events */

static void
on_stream_open(void *arg, const struct xnode *header)
{
	const char *id = xnode_attr(header, "id");

	log_debug("stream opened by the server (id %s)", id ? id : "none");
}

static enum event
classify(const struct stream_elem *e)
{
	static const struct {
		const char	*ns;
		const char	*name;
		enum event	 ev;
	} known[] = {
		{ NS_STREAMS, "features", EV_FEATURES },
		{ NS_STREAMS, "error", EV_STREAM_ERROR },
		{ NS_TLS, "proceed", EV_PROCEED },
		{ NS_TLS, "failure", EV_TLS_FAILURE },
		{ NS_SASL, "challenge", EV_CHALLENGE },
		{ NS_SASL, "success", EV_SUCCESS },
		{ NS_SASL, "failure", EV_SASL_FAILURE },
		{ NS_SASL2, "challenge", EV_CHALLENGE2 },
		{ NS_SASL2, "success", EV_SUCCESS2 },
		{ NS_SASL2, "failure", EV_FAILURE2 },
		{ NS_SASL2, "continue", EV_CONTINUE2 },
		{ NS_SM, "enabled", EV_ENABLED },
		{ NS_SM, "resumed", EV_RESUMED },
		{ NS_SM, "failed", EV_SM_FAILED },
		{ NS_SM, "r", EV_SM_R },
		{ NS_SM, "a", EV_SM_A },
	};
	static const char *const stream_level[] = {
		NS_STREAMS, NS_TLS, NS_SASL, NS_SASL2, NS_SM,
	};
	size_t i;

	if (e->stanza)
		return strcmp(e->name, "iq") == 0 ? EV_IQ : EV_STANZA;
	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (xnode_is(e->tree, known[i].name, known[i].ns))
			return known[i].ev;
	for (i = 0; i < sizeof(stream_level) / sizeof(stream_level[0]); i++)
		if (strcmp(e->tree->ns, stream_level[i]) == 0)
			return EV_UNKNOWN;
	return EV_OTHER;
}

/* Is this valid in this state?  If not, a protocol error. */
static void
dispatch(struct session *s, enum event ev, const struct stream_elem *e)
{
	handler h = machine[s->state].on[ev];

	if (h == NULL) {
		if (e != NULL && !e->stanza)
			protocol_error(s, "unexpected <%s xmlns='%s'> in %s",
			    e->tree->name, e->tree->ns, machine[s->state].seed);
		else
			protocol_error(s, "unexpected %s in %s",
			    event_names[ev], machine[s->state].seed);
		return;
	}
	h(s, e);
}

static void
on_stream_element(void *arg, const struct stream_elem *e)
{
	struct session *s = arg;

	s->last_rx = uv_now(s->loop);
	if (e->stanza)
		sm_received(s->sm);
	dispatch(s, classify(e), e);
}

static void
on_stream_close(void *arg)
{
	dispatch(arg, EV_CLOSE, NULL);
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
	uv_timer_t *timers[] = {
		&s->handshake, &s->retry, &s->stop_timer, &s->ping_timer,
	};
	size_t i;

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
	/* uv_timer_init cannot fail on Unix; were it to, stop here. */
	for (i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
		if (uv_timer_init(loop, timers[i]) != 0) {
			log_error("cannot create the session's timers");
			abort();
		}
	for (i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
		timers[i]->data = s;
	buf_init(&s->scratch);
	squeue_init(&s->queue);
	s->sm = sm_new();
	sm_on_release(s->sm, on_released, s);
	s->fast = fast_new();
	s->seed = (unsigned)uv_hrtime() ^ (unsigned)getpid();
	s->state = ST_DISCONNECTED;
	s->since = uv_now(loop);
	return s;
}

int
session_configure(struct session *s, const struct conf *conf)
{
	struct link_tls tls = {
		.ca_file = conf->ca_file,
		.verify = conf->tls_verify,
	};

	/* TLS first: if it cannot be loaded, nothing changes. */
	if (link_configure(s->link, &tls) != 0)
		return -1;
	(void)fast_open(s->fast, conf->state_directory);
	s->conf = conf;
	s->delay_ms = (uint64_t)conf->reconnect_delay * 1000;
	stream_set_max(s->stream, conf->max_stanza_size);
	return 0;
}

void
session_start(struct session *s)
{
	if (s->state != ST_DISCONNECTED)
		return;
	status_disconnected(s, "connecting", 0);
	s->redirects = 0;
	connect_now(s);
}

static void
on_stop_timeout(uv_timer_t *t)
{
	struct session *s = t->data;

	log_warn("the server did not close its stream in time");
	if (s->state == ST_STOPPING)
		finish_stop(s);
	else if (s->state == ST_CLOSING)
		reopen(s, 0);
}

/* Our side of the stream is closed; wait a little for the server's. */
static void
close_stream(struct session *s, enum state next)
{
	uv_timer_stop(&s->ping_timer);
	send_raw(s, "</stream:stream>", 16);
	set_state(s, next, NULL);
	arm(&s->stop_timer, on_stop_timeout, STOP_TIMEOUT_MS);
}

void
session_restart(struct session *s)
{
	switch (s->state) {
	case ST_DISCONNECTED:
	case ST_STOPPING:
		log_info("not reconnecting: the session is %s",
		    s->state == ST_STOPPING ? "shutting down" : "stopped");
		return;
	case ST_CLOSING:
		return;		/* the new configuration applies at reopen */
	default:
		break;
	}
	forget_targets(s);
	sasl_cache_clear(&s->sasl_cache);
	s->scram_pinned = 0;
	s->redirects = 0;
	free(s->redirect);
	s->redirect = NULL;
	if (is_up(s)) {
		/* Close the old session properly: the server frees it at once
		 * instead of keeping it for a resumption that never comes.
		 * Its acks still count until it has closed too. */
		close_stream(s, ST_CLOSING);
		return;
	}
	/* Another account or resource: not ours to resume. */
	sm_forget(s->sm, &s->queue);
	clear_connection(s);
	uv_timer_stop(&s->retry);
	s->delay_ms = (uint64_t)s->conf->reconnect_delay * 1000;
	connect_now(s);
}

void
session_stop(struct session *s)
{
	uv_timer_stop(&s->retry);
	switch (s->state) {
	case ST_UP2:
	case ST_BINDED:
		queue_send(s, 1);
		close_stream(s, ST_STOPPING);
		return;
	case ST_CLOSING:
		set_state(s, ST_STOPPING, NULL);
		return;
	case ST_STOPPING:
		return;
	default:
		finish_stop(s);
	}
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
	/* Nobody to tell about receipts any more. */
	s->nrcpt = 0;
	sm_on_release(s->sm, NULL, NULL);
	clear_connection(s);
	free(s->rcpt);
	squeue_free(&s->queue);
	sm_free(s->sm);
	free(s->redirect);
	link_free(s->link);
	stream_free(s->stream);
	sasl_clear(&s->sasl);
	sasl_cache_clear(&s->sasl_cache);
	fast_free(s->fast);
	free(s->jid);
	buf_free(&s->scratch);
	s->open_timers = 4;
	uv_close((uv_handle_t *)&s->handshake, on_session_closed);
	uv_close((uv_handle_t *)&s->retry, on_session_closed);
	uv_close((uv_handle_t *)&s->ping_timer, on_session_closed);
	uv_close((uv_handle_t *)&s->stop_timer, on_session_closed);
}
