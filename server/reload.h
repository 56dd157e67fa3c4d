/* server/reload.h: SIGHUP: the settings are loaded again from where they came from. New
 * execs get the new limits, timeouts, caps, log level and SSH key; running execs and busy
 * sessions go on as they were; a file that does not load changes nothing. */
#ifndef EB_SERVER_RELOAD_H
#define EB_SERVER_RELOAD_H

#include "config/config.h"
#include "pool/pool.h"

struct server;

/* The pool's settings out of the broker's. */
void reload_pool_config(const struct config *cfg, struct pool_config *pc);
/* Loads the settings again and applies what a running broker can take. */
void reload_settings(struct server *s);

#endif
