/*
 * compat_expat.h: what differs between expat 2.5 (Debian 12) and 2.9
 * (Debian 13), in this one place.  Expat 2.9 has 64-bit variants of the
 * location functions and deprecates the old ones.
 */
#ifndef CLAWSD_COMPAT_EXPAT_H
#define CLAWSD_COMPAT_EXPAT_H

#include <stdint.h>

#include <expat.h>

#if XML_MAJOR_VERSION > 2 || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 9)
#define COMPAT_XML_64	1
#endif

/* Offset of the current event in the whole input; -1 if none. */
static inline int64_t
compat_xml_byte_index(XML_Parser p)
{
#ifdef COMPAT_XML_64
	return XML_GetCurrentByteIndex64(p);
#else
	return (int64_t)XML_GetCurrentByteIndex(p);
#endif
}

/* Bytes in the current event. */
static inline uint64_t
compat_xml_byte_count(XML_Parser p)
{
#ifdef COMPAT_XML_64
	return XML_GetCurrentByteCount64(p);
#else
	return (uint64_t)XML_GetCurrentByteCount(p);
#endif
}

static inline uint64_t
compat_xml_line(XML_Parser p)
{
#ifdef COMPAT_XML_64
	return XML_GetCurrentLineNumber64(p);
#else
	return (uint64_t)XML_GetCurrentLineNumber(p);
#endif
}

/*
 * The input buffer around the current position: *off into it, *size of
 * it.  NULL if expat keeps no context.
 */
static inline const char *
compat_xml_input_context(XML_Parser p, int64_t *off, uint64_t *size)
{
#ifdef COMPAT_XML_64
	return XML_GetInputContext64(p, off, size);
#else
	const char *ctx;
	int o, n;

	ctx = XML_GetInputContext(p, &o, &n);
	*off = o;
	*size = (uint64_t)n;
	return ctx;
#endif
}

#endif
