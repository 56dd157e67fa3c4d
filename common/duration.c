/* common/duration.c: parsing of human durations. */
#include "common/duration.h"

#include <string.h>

#include "common/err.h"

int duration_parse(const char *s, long long max_seconds, long long *seconds)
{
	static const char units[] = "wdhms";
	static const long long unit_s[] = {604800, 86400, 3600, 60, 1};
	long long total = 0;
	int last_unit = -1;
	const char *p = s;

	if (*p == '\0')
		return EB_ERR_INVAL;
	while (*p != '\0') {
		long long n = 0;
		const char *u;
		int digits = 0;

		while (*p >= '0' && *p <= '9') {
			if (n > 1000000000LL)
				return EB_ERR_RANGE;
			n = n * 10 + (*p - '0');
			p++;
			digits++;
		}
		if (digits == 0 || *p == '\0')
			return EB_ERR_INVAL;
		u = strchr(units, *p);
		if (u == NULL)
			return EB_ERR_INVAL;
		if ((int)(u - units) <= last_unit)
			return EB_ERR_INVAL;
		last_unit = (int)(u - units);
		total += n * unit_s[last_unit];
		if (total > max_seconds)
			return EB_ERR_RANGE;
		p++;
	}
	if (total == 0)
		return EB_ERR_RANGE;
	*seconds = total;
	return 0;
}
