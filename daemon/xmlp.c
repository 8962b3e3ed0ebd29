#include <string.h>

#include "compat_expat.h"
#include "stream.h"
#include "xmlp.h"
#include "xmlw.h"

static void
refuse(void *arg, const char *what)
{
	struct xmlp *x = arg;

	if (x->refused == NULL)
		x->refused = what;
	XML_StopParser(x->parser, XML_FALSE);
}

static void XMLCALL
on_comment(void *arg, const char *data)
{
	refuse(arg, "a comment");
}

static void XMLCALL
on_pi(void *arg, const char *target, const char *data)
{
	refuse(arg, "a processing instruction");
}

static void XMLCALL
on_doctype(void *arg, const char *name, const char *sysid, const char *pubid,
    int has_internal_subset)
{
	refuse(arg, "a DTD");
}

static void XMLCALL
on_entity(void *arg, const char *name, int is_param, const char *value,
    int len, const char *base, const char *sysid, const char *pubid,
    const char *notation)
{
	refuse(arg, "an entity declaration");
}

static void
setup(struct xmlp *x, void *owner)
{
	XML_Parser p = x->parser;

	x->refused = NULL;
	XML_SetReturnNSTriplet(p, 1);
	XML_SetUserData(p, owner);
	XML_SetCommentHandler(p, on_comment);
	XML_SetProcessingInstructionHandler(p, on_pi);
	XML_SetStartDoctypeDeclHandler(p, on_doctype);
	XML_SetEntityDeclHandler(p, on_entity);
	XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
#ifdef HAVE_XML_REPARSE_DEFERRAL
	/* Expat >= 2.6 may hold back the end of an element for more input. */
	XML_SetReparseDeferralEnabled(p, XML_FALSE);
#endif
}

int
xmlp_init(struct xmlp *x, void *owner)
{
	/* The encoding is fixed: a declaration may not switch it. */
	x->parser = XML_ParserCreateNS("UTF-8", XMLW_NSSEP);
	if (x->parser == NULL)
		return -1;
	setup(x, owner);
	return 0;
}

void
xmlp_reset(struct xmlp *x, void *owner)
{
	XML_ParserReset(x->parser, "UTF-8");
	setup(x, owner);
}

void
xmlp_free(struct xmlp *x)
{
	if (x->parser != NULL)
		XML_ParserFree(x->parser);
	x->parser = NULL;
}

const char *
xmlp_stanza_name(const char *name)
{
	static const char *const names[] = { "message", "presence", "iq" };
	static const char ns[] = NS_CLIENT "\x01";
	const char *local = name + sizeof(ns) - 1;
	size_t i, n;

	if (strncmp(name, ns, sizeof(ns) - 1) != 0)
		return NULL;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		n = strlen(names[i]);
		if (strncmp(local, names[i], n) == 0 &&
		    (local[n] == '\0' || local[n] == XMLW_NSSEP))
			return names[i];
	}
	return NULL;
}

unsigned long long
xmlp_event_start(const struct xmlp *x)
{
	return (unsigned long long)compat_xml_byte_index(x->parser);
}

unsigned long long
xmlp_event_end(const struct xmlp *x)
{
	return (unsigned long long)compat_xml_byte_index(x->parser) +
	    compat_xml_byte_count(x->parser);
}
