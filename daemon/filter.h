/*
 * A client's filter (SPEC 4.5): which relayed stanzas it receives.  Parsed
 * once from the command's attributes, matched once per line against the
 * line's head.
 */
#ifndef CLAWSD_FILTER_H
#define CLAWSD_FILTER_H

#include "head.h"

/* Most values in one attribute, and longest value (a JID's bound). */
#define FILTER_MAX_VALUES	64
#define FILTER_MAX_VALUE	3071

struct filter;

/*
 * From the attributes of <filter/> (name, value, ..., NULL).  Returns the
 * filter, or NULL with a human text in `*err' (bad-command).
 */
struct filter	*filter_parse(const char **attrs, const char **err);
void		 filter_free(struct filter *);
/*
 * Does the stanza pass?  `account' is the account's bare JID, which a
 * stanza without `from' counts as coming from.
 */
int		 filter_match(const struct filter *, const struct head *,
		    const char *account);

#endif
