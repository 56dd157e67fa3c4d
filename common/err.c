/* common/err.c: descriptions of the EB_ERR_* codes. */
#include "common/err.h"

const char *eb_strerror(int err)
{
	switch (err) {
	case EB_OK:
		return "success";
	case EB_ERR_NOMEM:
		return "out of memory";
	case EB_ERR_INVAL:
		return "invalid input";
	case EB_ERR_RANGE:
		return "value out of range";
	case EB_ERR_IO:
		return "input/output error";
	case EB_ERR_DB:
		return "database error";
	case EB_ERR_NOTFOUND:
		return "not found";
	case EB_ERR_EXISTS:
		return "already exists";
	case EB_ERR_SSH:
		return "ssh error";
	case EB_ERR_HOSTKEY:
		return "host key mismatch";
	case EB_ERR_AUTH:
		return "authentication failed";
	case EB_ERR_CONFLICT:
		return "conflict";
	case EB_ERR_TIMEOUT:
		return "timed out";
	default:
		return "unknown error";
	}
}
