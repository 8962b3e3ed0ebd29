/*
 * srvq: daemon/srv.c on its own, for tests/integration/test_srv.py.
 *
 *	srvq DOMAIN		resolve, print the outcome, exit 0
 *	srvq -c DOMAIN		start a query, cancel it at once, run the
 *				loop until the lookups are done: prints
 *				"cancelled" (exit 0), or exits 1 if the
 *				callback ran anyway
 *
 * Output: "status FOUND|NONE|NOT_OFFERED|FAILED", then "err TEXT" if any,
 * then one line per target in order: "HOST PORT direct|starttls PRIORITY
 * WEIGHT".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "log.h"
#include "srv.h"

static int called;

static void
done(void *arg, enum srv_status st, struct srv_target *list, size_t n,
    const char *err)
{
	static const char *const names[] = {
		[SRV_FOUND] = "FOUND",
		[SRV_NONE] = "NONE",
		[SRV_NOT_OFFERED] = "NOT_OFFERED",
		[SRV_FAILED] = "FAILED",
	};
	size_t i;

	called++;
	printf("status %s\n", names[st]);
	if (err != NULL)
		printf("err %s\n", err);
	for (i = 0; i < n; i++)
		printf("%s %d %s %d %d\n", list[i].host, list[i].port,
		    list[i].direct ? "direct" : "starttls", list[i].priority,
		    list[i].weight);
	srv_free_list(list, n);
}

int
main(int argc, char **argv)
{
	uv_loop_t *loop = uv_default_loop();
	struct srv_query *q;
	int cancel = 0;

	log_init();
	log_set_level(LOG_LEVEL_DEBUG);
	if (argc == 3 && strcmp(argv[1], "-c") == 0) {
		cancel = 1;
		argv++;
		argc--;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: srvq [-c] DOMAIN\n");
		return 2;
	}
	q = srv_resolve(loop, argv[1], done, NULL);
	if (q == NULL)
		return 1;
	if (cancel)
		srv_cancel(q);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	if (cancel) {
		if (called)
			return 1;
		printf("cancelled\n");
	}
	fflush(stdout);
	return 0;
}
