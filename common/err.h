/* common/err.h: the error codes every exec-broker function returns (0 or a negative
 * EB_ERR_*), and their one-line descriptions. */
#ifndef EB_COMMON_ERR_H
#define EB_COMMON_ERR_H

enum {
	EB_OK = 0,
	EB_ERR_NOMEM = -1,     /* out of memory */
	EB_ERR_INVAL = -2,     /* malformed input */
	EB_ERR_RANGE = -3,     /* well-formed but out of bounds */
	EB_ERR_IO = -4,        /* a local file or system call failed */
	EB_ERR_DB = -5,        /* PostgreSQL refused or could not be reached */
	EB_ERR_NOTFOUND = -6,  /* no such object */
	EB_ERR_EXISTS = -7,    /* the object exists already */
	EB_ERR_SSH = -8,       /* SSH connection or protocol failure */
	EB_ERR_HOSTKEY = -9,   /* host key does not match its pin */
	EB_ERR_AUTH = -10,     /* authentication refused */
	EB_ERR_CONFLICT = -11, /* state does not allow this (e.g. schema checksum mismatch) */
	EB_ERR_TIMEOUT = -12,  /* deadline passed */
};

/* Never NULL; the text of an unknown code says so. */
const char *eb_strerror(int err);

#endif
