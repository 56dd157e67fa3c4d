/* fuzz/fuzz.h: what the libFuzzer targets share: a failed property is reported with the
 * target's own words and ends the run as a crash, so that libFuzzer keeps the input; and
 * the checks of an accepted exec request, which a batch's command must pass as well. */
#ifndef EB_FUZZ_FUZZ_H
#define EB_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "api/exec_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints "fuzz: property failed: ..." and aborts. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fuzz_fail(__VA_ARGS__);                                                    \
	} while (0)

/* The limits the targets parse with: the settings' defaults (config/config.c). */
extern const struct request_limits fuzz_limits;

/* Every documented limit of an accepted request, and that the pool can quote it for a
 * host (command_build succeeds). */
void fuzz_check_exec_request(const struct exec_request *req, const struct request_limits *lim);
/* A refusal: a known code, a message, and a field unless the body as a whole is wrong. */
void fuzz_check_request_error(int rc, const struct request_error *e);

#endif
