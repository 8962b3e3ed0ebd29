/*
 * Configuration: the INI file of SPEC section 2, parsed with inih and
 * validated.  Every problem is reported as "FILE:LINE: message".
 */
#ifndef CLAWSD_CONF_H
#define CLAWSD_CONF_H

#include <stdio.h>
#include <sys/types.h>

#define CONF_DEFAULT_PATH	"/etc/clawsd/clawsd.conf"
#define CONF_EX_CONFIG		78

enum conf_tls {
	CONF_TLS_STARTTLS,
	CONF_TLS_DIRECT,
	CONF_TLS_NONE,
};

/* channel_binding: whether SCRAM binds to the TLS channel (-PLUS). */
enum conf_cb {
	CONF_CB_AUTO,		/* when both sides can */
	CONF_CB_REQUIRE,	/* or no login */
	CONF_CB_NO,
};

/* A room of [rooms]: ROOM@SERVICE = NICK [password=SECRET] */
struct conf_room {
	char		*jid;			/* bare JID, as written */
	char		*nick;
	char		*password;		/* NULL: none */
	int		 line;
};

struct conf {
	/* [xmpp] */
	char		*user;
	char		*domain;
	char		*resource;
	char		*password;		/* from password or password_file */
	char		*host;			/* NULL: SRV, then domain */
	int		 port;			/* 0: the default for `tls' */
	enum conf_tls	 tls;
	int		 tls_verify;
	char		*ca_file;		/* NULL: the system bundle */
	char		*sasl_mechanisms;	/* space-separated, upper case */
	enum conf_cb	 channel_binding;
	int		 presence;
	int		 priority;
	int		 stream_management;
	unsigned	 ping_interval;		/* seconds, 0: off */
	unsigned	 ping_timeout;
	unsigned	 connect_timeout;
	unsigned	 reconnect_delay;
	unsigned	 reconnect_max_delay;
	size_t		 queue_max;
	size_t		 max_stanza_size;
	int		 catch_up;
	size_t		 catch_up_max;
	char		*state_directory;	/* NULL: none */

	/* [rooms] */
	struct conf_room *rooms;
	size_t		 nrooms;
	unsigned	 rooms_ping_interval;	/* seconds, 0: off */

	/* [socket] */
	char		*socket_path;
	unsigned	 socket_mode;
	char		*socket_group;		/* NULL: leave as is */
	gid_t		 socket_gid;		/* from socket_group, else (gid_t)-1 */
	size_t		 max_clients;
	size_t		 client_buffer;
	unsigned	 reply_timeout;		/* seconds a request waits */

	/* [log] */
	int		 log_level;		/* enum log_level */
};

/*
 * Read and validate `path'.  Every problem is printed to `errors' as
 * "FILE:LINE: message".  Returns 0 and fills `c' when the file is valid;
 * -1 otherwise, with `c' left empty (conf_free is still safe).
 */
int	 conf_load(struct conf *c, const char *path, FILE *errors);
void	 conf_free(struct conf *c);
/* 127.0.0.0/8, ::1 or localhost: where a stream may go in clear text. */
int	 conf_is_loopback(const char *host);
/* Port to connect to: `port' if set, else 5222, or 5223 for direct TLS. */
int	 conf_port(const struct conf *c);
/* Nonzero if the [xmpp] settings of a and b differ (reconnect needed). */
int	 conf_xmpp_changed(const struct conf *a, const struct conf *b);
/* Nonzero if the [rooms] of a and b differ (joins and leaves, no reconnect). */
int	 conf_rooms_changed(const struct conf *a, const struct conf *b);
/* Nonzero if the [socket] settings of a and b differ. */
int	 conf_socket_changed(const struct conf *a, const struct conf *b);

#endif
