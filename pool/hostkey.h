/* pool/hostkey.h: host-key fingerprints as the pool sees them. The preference order of
 * host-key algorithms is fixed, so that the key `workspace hostkey` prints for pinning is
 * the key the pool will be shown when it connects. */
#ifndef EB_POOL_HOSTKEY_H
#define EB_POOL_HOSTKEY_H

#include <libssh2.h>
#include <stddef.h>

#include "pool/fingerprint.h"

#define HOSTKEY_METHODS                                                                            \
	"ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,"    \
	"rsa-sha2-256,ssh-rsa"

/* Sets the session's host-key algorithm preference to HOSTKEY_METHODS, less what this
 * libssh2 does not support. 0 or EB_ERR_SSH. */
int hostkey_set_method_pref(LIBSSH2_SESSION *session);

/* Connects to host:port (blocking, for the CLI only), completes the key exchange without
 * authenticating, and writes the server's host-key fingerprint ("SHA256:...") and key type
 * ("ED25519", "ECDSA", "RSA") into fp and type. 0, or EB_ERR_SSH / EB_ERR_IO /
 * EB_ERR_TIMEOUT with one line in err. */
int hostkey_probe(const char *host, int port, int timeout_ms, char fp[FP_TEXT_LEN + 1],
                  char type[16], char *err, size_t errlen);

#endif
