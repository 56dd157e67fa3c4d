# exec-broker: a plain Makefile. `make` builds build/exec-broker; `make check` installs what
# is missing and runs every test; `make check SANITIZE=1` does the same with ASan + UBSan
# in build/asan. Headers are tracked with -MMD; rules are quiet unless V=1.

VERSION := 0.1.0
PREFIX ?= /usr/local
DESTDIR ?=

PKGS := libevent libevent_openssl libssh2 libpq jansson inih libssl libcrypto uuid libsystemd
TEST_PKGS := check

ifeq ($(SANITIZE),1)
BUILD := build/asan
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD := build
SAN :=
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wformat=2 -Wvla -Wpointer-arith -Wundef
CFLAGS ?= -O2 -g
# Evaluated lazily so that `make check` can install the packages before they are asked for.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
# http-parser ships no pkg-config file.
PKG_LIBS = $(shell pkg-config --libs $(PKGS)) -lhttp_parser
TEST_LIBS = $(shell pkg-config --libs $(TEST_PKGS))
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DEB_VERSION='"$(VERSION)"' $(WARN) $(CFLAGS) $(SAN) \
	-I. -I$(BUILD)/gen $(PKG_CFLAGS)

MAIN_SRC := cmd/main.c
# The folders of the product, lowest layer first (docs/architecture.md).
LIB_DIRS := common config db pool audit http api server admin client
LIB_SRC := $(wildcard $(LIB_DIRS:%=%/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/migrations_data.o \
	$(BUILD)/obj/gen/openapi_data.o
TEST_SRC := $(wildcard tests/check_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# A suite that includes the kit (tests/kit/: fixtures, broker processes, the HTTP client) is
# an integration suite and links it; the others are unit tests and link only the product
# library, from which the linker takes the module under test, and the runner.
TEST_INTEG_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(shell grep -l '"tests/kit/' $(TEST_SRC)))
TEST_RUNNER := $(BUILD)/obj/tests/runner.o
# The kit's objects, which benchmarks link too; expect.c is its Check side, for suites only.
KIT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out tests/kit/expect.c,$(wildcard tests/kit/*.c)))
KIT_CHECK_OBJ := $(BUILD)/obj/tests/kit/expect.o
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
SOURCES := $(wildcard */*.c */*.h tests/kit/*.c tests/kit/*.h)

ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n'
endif

.PHONY: all deps check test-run install clean format run run-fleet bench bench-audit \
	bench-detached bench-batch bench-fleet bench-chain soak \
	check-systemd \
	config-example
# Keep the objects of test binaries: they are intermediates of a chained rule.
.SECONDARY:
all: $(BUILD)/exec-broker

deps:
	$(Q)scripts/install-deps

check: deps lint-openapi
	$(Q)$(MAKE) --no-print-directory test-run
	$(Q)$(MAKE) --no-print-directory check-systemd

# docs/openapi.yaml, linted by the Redocly CLI pinned in docs/package.json (installed into
# docs/node_modules, again when docs/package-lock.json changes).
.PHONY: lint-openapi
lint-openapi: deps
	$(Q)if [ ! -d docs/node_modules ] || [ docs/package-lock.json -nt docs/node_modules ]; then \
		npm ci --prefix docs --no-audit --no-fund; fi
	$(Q)npm --prefix docs run lint

test-run: $(BUILD)/exec-broker $(TEST_BIN)
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) tests/run $(TEST_BIN)

$(BUILD)/exec-broker: $(BUILD)/obj/$(MAIN_SRC:.c=.o) $(BUILD)/libeb.a
	$(say) LINK $@
	$(Q)$(CC) $(ALL_CFLAGS) $^ $(PKG_LIBS) -o $@

$(BUILD)/libeb.a: $(LIB_OBJ)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_RUNNER) $(BUILD)/libeb.a
	$(say) LINK $@
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) $(filter %.o,$^) $(filter %.a,$^) $(PKG_LIBS) $(TEST_LIBS) -o $@

$(TEST_INTEG_BIN): $(KIT_OBJ) $(KIT_CHECK_OBJ)

# Benchmarks print figures and never fail on timing; see bench/README.md.
BENCH_AUDIT := $(BUILD)/bench/bench_audit $(BUILD)/bench/audit_gen $(BUILD)/exec-broker

bench: $(BUILD)/bench/bench_pool $(BUILD)/bench/bench_exec $(BUILD)/bench/bench_detached \
	$(BUILD)/bench/bench_batch $(BUILD)/bench/bench_fleet $(BENCH_AUDIT) \
	$(BUILD)/bench/bench_chain
	$(Q)$(BUILD)/bench/bench_pool
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_exec
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_detached
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_batch
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_fleet
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_audit
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_chain

bench-detached: $(BUILD)/bench/bench_detached $(BUILD)/exec-broker
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_detached

bench-batch: $(BUILD)/bench/bench_batch $(BUILD)/exec-broker
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_batch

# Reads scripts/haproxy.cfg from the current directory, as tests/check_fleet.c does.
bench-fleet: $(BUILD)/bench/bench_fleet $(BUILD)/exec-broker
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_fleet

bench-audit: $(BENCH_AUDIT)
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_audit

# pgbench (postgresql-client) replays the broker's audit statements.
bench-chain: $(BUILD)/bench/bench_chain $(BUILD)/exec-broker
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/bench_chain

# The soak runs SOAK_MINUTES (10) of mixed load; see bench/README.md. Not part of `check`.
soak: $(BUILD)/bench/soak $(BUILD)/exec-broker
	$(Q)EB_BIN=$(abspath $(BUILD)/exec-broker) $(BUILD)/bench/soak

# The generator of audit rows is a plain libpq client.
$(BUILD)/bench/audit_gen: $(BUILD)/obj/bench/audit_gen.o
	$(say) LINK $@
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) $^ $(PKG_LIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(BUILD)/obj/bench/benchutil.o $(KIT_OBJ) $(BUILD)/libeb.a
	$(say) LINK $@
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) $^ $(PKG_LIBS) -o $@

$(BUILD)/obj/%.o: %.c
	$(say) CC $<
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# The SQL of every migration is compiled into the binary, so that an installed
# exec-broker migrates without the source tree.
$(BUILD)/gen/migrations_data.c: scripts/embed-migrations $(MIGRATIONS)
	$(say) GEN $@
	$(Q)mkdir -p $(@D)
	$(Q)scripts/embed-migrations $(MIGRATIONS) >$@.tmp && mv $@.tmp $@

# So is the OpenAPI document, served at GET /openapi.yaml.
$(BUILD)/gen/openapi_data.c: scripts/embed-file docs/openapi.yaml
	$(say) GEN $@
	$(Q)mkdir -p $(@D)
	$(Q)scripts/embed-file api/openapi.h openapi_yaml docs/openapi.yaml >$@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	$(say) CC $<
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

# The units name /usr/bin/exec-broker; another PREFIX is written into the installed copies.
# The config file is installed only where there is none, so that an install never
# overwrites a configured broker (into a fresh DESTDIR it always is).
UNITS := systemd/exec-broker.service systemd/exec-broker-migrate.service
CONF_DIR := $(DESTDIR)/etc/exec-broker

install: $(BUILD)/exec-broker
	install -D -m 0755 $(BUILD)/exec-broker $(DESTDIR)$(PREFIX)/bin/exec-broker
	install -d -m 0755 $(DESTDIR)$(PREFIX)/lib/systemd/system
	for u in $(UNITS); do \
		sed 's|/usr/bin/exec-broker|$(PREFIX)/bin/exec-broker|g' $$u \
			>$(DESTDIR)$(PREFIX)/lib/systemd/system/$${u#systemd/} && \
		chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/$${u#systemd/} || exit 1; \
	done
	install -D -m 0644 systemd/exec-broker.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/exec-broker.conf
	install -D -m 0644 systemd/exec-broker.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/exec-broker.conf
	install -D -m 0644 docs/exec-broker.1 $(DESTDIR)$(PREFIX)/share/man/man1/exec-broker.1
	install -d -m 0750 $(CONF_DIR)
	if [ ! -e $(CONF_DIR)/exec-broker.conf ]; then \
		install -m 0640 systemd/exec-broker.conf.example $(CONF_DIR)/exec-broker.conf; \
	else \
		echo "install: keeping $(CONF_DIR)/exec-broker.conf"; \
	fi

# The commented default config is generated from the settings table; tests/ops-check
# fails when the checked-in copy differs.
config-example: $(BUILD)/exec-broker
	$(Q)scripts/gen-config-example $(BUILD)/exec-broker >systemd/exec-broker.conf.example

# Units (systemd-analyze verify, security exposure <= 2.0), sysusers/tmpfiles, the
# example config, the man page and `make install`: tests/ops-check.
check-systemd: $(BUILD)/exec-broker
	$(Q)tests/ops-check $(BUILD)/exec-broker

# The local demo (scripts/demo): PostgreSQL, an sshd workspace and the broker in the
# foreground, state in var/demo; Ctrl-C stops all of it. Built after deps, like check.
run: deps
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) $(BUILD)/exec-broker
	$(Q)exec scripts/demo $(abspath $(BUILD)/exec-broker)

# The same with three brokers on that database behind HAProxy (scripts/haproxy.cfg), as
# EB_DEMO_BROKERS=3 make run.
run-fleet: deps
	$(Q)$(MAKE) --no-print-directory $(if $(Q),-s) $(BUILD)/exec-broker
	$(Q)EB_DEMO_BROKERS=3 exec scripts/demo $(abspath $(BUILD)/exec-broker)

# libFuzzer targets (fuzz/fuzz_*.c): clang with ASan + UBSan into build/fuzz, the
# product library compiled again there with coverage. `make fuzz` runs each target
# FUZZ_SECONDS; `make fuzz-ci` each FUZZ_CI_SECONDS (12 targets: 6 minutes), as CI will.
# scripts/fuzz-run reads the seeds of fuzz/corpus/ without writing there and keeps what
# fails in build/fuzz/crashes/.
FUZZ := build/fuzz
FUZZ_CC := clang
FUZZ_SECONDS ?= 300
FUZZ_CI_SECONDS ?= 30
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# clang's -Wformat=2 also wants a format attribute on every va_list wrapper; gcc does not.
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -DEB_VERSION='"$(VERSION)"' $(WARN) -Wno-format-nonliteral \
	-O1 -g $(FUZZ_SAN) \
	-I. -I$(FUZZ)/gen $(PKG_CFLAGS)
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
# What the targets share (fuzz.c, audit_check.c); argv_helper is a program of its own.
FUZZ_SUPPORT := $(patsubst %.c,$(FUZZ)/obj/%.o,$(filter-out fuzz/fuzz_%.c fuzz/argv_helper.c,$(wildcard fuzz/*.c)))
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ)/fuzz_%) $(FUZZ)/argv_helper
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ)/obj/%.o) $(FUZZ)/obj/gen/migrations_data.o \
	$(FUZZ)/obj/gen/openapi_data.o

.PHONY: fuzz fuzz-ci fuzz-build
fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	$(Q)scripts/fuzz-run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci: fuzz-build
	$(Q)scripts/fuzz-run $(FUZZ_CI_SECONDS) $(FUZZ_TARGETS)

$(FUZZ)/fuzz_%: $(FUZZ)/obj/fuzz/fuzz_%.o $(FUZZ_SUPPORT) $(FUZZ)/libeb.a
	$(say) LINK $@
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $^ $(PKG_LIBS) -o $@

$(FUZZ)/libeb.a: $(FUZZ_LIB_OBJ)
	$(say) AR $@
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# What fuzz_argv runs behind /bin/sh: plain, so that nothing of the sanitizers' runtime
# reads the environment the target sets.
$(FUZZ)/argv_helper: fuzz/argv_helper.c
	$(say) LINK $@
	$(Q)mkdir -p $(@D)
	$(Q)$(FUZZ_CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 $< -o $@

$(FUZZ)/obj/%.o: %.c
	$(say) CC $<
	$(Q)mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ)/gen/%.c: $(BUILD)/gen/%.c
	$(Q)mkdir -p $(@D)
	$(Q)cp $< $@

$(FUZZ)/obj/gen/%.o: $(FUZZ)/gen/%.c
	$(say) CC $<
	$(Q)mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

format:
	clang-format -i $(SOURCES)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(FUZZ)/obj -name '*.d' 2>/dev/null)
