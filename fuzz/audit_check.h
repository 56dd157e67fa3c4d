/* fuzz/audit_check.h: the checks of an accepted audit filter (audit/filter.h), shared by
 * fuzz_audit_filter and fuzz_query (which reaches the filter through a request's query). */
#ifndef EB_FUZZ_AUDIT_CHECK_H
#define EB_FUZZ_AUDIT_CHECK_H

#include <stddef.h>

#include "audit/filter.h"

/* f accepted from the n pairs: every value within its documented range; its times and
 * its cursor round trip. rc and field/err from audit_filter_parse. */
void fuzz_check_audit_filter(int rc, const struct audit_filter *f, const char *const *names,
                             size_t n, const char *field, const char *err);

#endif
