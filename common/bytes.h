/* common/bytes.h: a byte string that may contain anything, NUL included (as JSON strings
 * can): argv elements, env names and values travel from the request to the host and the
 * audit log as these. */
#ifndef EB_COMMON_BYTES_H
#define EB_COMMON_BYTES_H

#include <stddef.h>

struct eb_bytes {
	const char *p;
	size_t len;
};

#endif
