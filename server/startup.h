/* server/startup.h: what the broker checks and settles before it serves, blocking (nothing
 * runs on the loop yet): its instance name, the database's schema, and the audit rows an
 * earlier life of this broker left running. */
#ifndef EB_SERVER_STARTUP_H
#define EB_SERVER_STARTUP_H

#include <stddef.h>

#include "config/config.h"

/* instance_name, or host:listen when it is not set. */
void startup_instance_name(const struct config *cfg, char *out, size_t len);

/* The schema must be exactly the one this binary knows; rows this broker left running are
 * marked abandoned. 0, or a negative EB_ERR_* with one line in err. */
int startup_check_database(const struct config *cfg, const char *instance, char *err,
                           size_t errlen);

#endif
