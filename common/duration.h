/* common/duration.h: human durations such as "90d", "12h", "1h30m", "45s", "2w". */
#ifndef EB_COMMON_DURATION_H
#define EB_COMMON_DURATION_H

/* Parses one or more <number><unit> parts (units s, m, h, d, w; each unit at most once,
 * largest first). 0 and the total in *seconds, EB_ERR_INVAL if malformed, EB_ERR_RANGE if
 * zero or more than max_seconds. */
int duration_parse(const char *s, long long max_seconds, long long *seconds);

#endif
