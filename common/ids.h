/* common/ids.h: the formats of identifiers an administrator or a client supplies. The
 * database's CHECK constraints (migrations/0001_initial.sql) hold the same rules. */
#ifndef EB_COMMON_IDS_H
#define EB_COMMON_IDS_H

#include <stdbool.h>

/* Workspace and org ids: 1-64 of [A-Za-z0-9._-], starting with a letter or digit. */
bool ids_valid_name(const char *s);
/* A host name or IP address literal: 1-253 of [A-Za-z0-9.:_-], not starting with '-'. */
bool ids_valid_host(const char *s);
/* A login name: 1-32 of [A-Za-z0-9._-], starting with a letter or '_'. */
bool ids_valid_ssh_user(const char *s);

#endif
