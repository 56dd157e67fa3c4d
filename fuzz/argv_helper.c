/* fuzz/argv_helper.c: what fuzz_argv runs behind /bin/sh. Prints, each ending in a NUL: its
 * working directory, its argument count, its arguments, then every FZ_* variable of its
 * environment. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
	char cwd[8192];

	if (getcwd(cwd, sizeof(cwd)) == NULL)
		cwd[0] = '\0';
	printf("%s%c%d%c", cwd, 0, argc, 0);
	for (int i = 0; i < argc; i++)
		printf("%s%c", argv[i], 0);
	for (char **e = environ; *e != NULL; e++)
		if (strncmp(*e, "FZ_", 3) == 0)
			printf("%s%c", *e, 0);
	return fflush(stdout) == 0 ? 0 : 1;
}
