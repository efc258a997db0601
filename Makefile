# ferry: `make` builds the library, `make test` runs every test, `make demo` runs the demo.
# The version lives in one place, core/include/ferry.h; the pkg-config version and the soname
# are read from it. Before 1.0 any 0.MINOR may break the ABI, so the soname carries MINOR.
ver        = $(shell sed -n 's/^\#define FERRY_VERSION_$(1) \([0-9]*\)$$/\1/p' core/include/ferry.h)
VMAJOR    := $(call ver,MAJOR)
VMINOR    := $(call ver,MINOR)
VPATCH    := $(call ver,PATCH)
VERSION   := $(VMAJOR).$(VMINOR).$(VPATCH)
SONAME    := libferry.so.$(if $(filter 0,$(VMAJOR)),0.$(VMINOR),$(VMAJOR))
PREFIX    ?= /usr/local
DESTDIR   ?=
CC        ?= cc
BUILD     := build

DEPS      := jansson libsodium
DEP_CFLAGS = $(shell pkg-config --cflags $(DEPS))
CORE_LIBS  = $(shell pkg-config --libs $(DEPS)) -pthread
DEP_LIBS   = $(CORE_LIBS) -lcivetweb
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS   = $(shell pkg-config --libs check)

WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Werror
CFLAGS    ?= -O2 -g
CORE_INC  := -Icore/include -Icore/src
# Transports see the public headers only: ferry.h and ferry_transport.h (check-transports).
TR_INC    := -Icore/include -Itransports/include -Itransports/src
INCLUDES  := $(CORE_INC) -Itransports/include -Itransports/src
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(CFLAGS) $(DEP_CFLAGS)
ALL_CFLAGS = $(BASE_CFLAGS) $(INCLUDES)
CORE_CFLAGS = $(BASE_CFLAGS) $(CORE_INC)
TR_CFLAGS = $(BASE_CFLAGS) $(TR_INC)
ASAN      := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
TSAN      := -O1 -g -fsanitize=thread

# One library: the sans-I/O core and the civetweb transports. The core is also built alone
# (libferry-core.a, core headers only) and its suites link without civetweb, which proves
# the boundary at link time; check-core greps for it too.
CORE_SRC  := $(wildcard core/src/*.c)
TR_SRC    := $(wildcard transports/src/*.c)
LIB_SRC   := $(CORE_SRC) $(TR_SRC)
CORE_HDR  := $(wildcard core/include/*.h core/src/*.h)
LIB_HDR   := $(CORE_HDR) $(wildcard transports/include/*.h transports/src/*.h)
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
LIB_OBJ   := $(CORE_OBJ) $(TR_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/ferry_js.o
JS_OBJ    := $(BUILD)/obj/ferry_js.o
TEST_SRC  := $(wildcard tests/core/*.c)
# The optional cluster layer (cluster/, docs/CLUSTER.md): its own library, so that only a
# service that clusters links hiredis.
CLUSTER_SRC := $(wildcard cluster/src/*.c)
CLUSTER_HDR := $(wildcard cluster/src/*.h cluster/include/*.h)
CLUSTER_OBJ := $(CLUSTER_SRC:%.c=$(BUILD)/obj/%.o)
CLUSTER_CFLAGS = $(CORE_CFLAGS) -Icluster/include -Icluster/src $(shell pkg-config --cflags hiredis)
CLUSTER_LIBS = $(shell pkg-config --libs hiredis)
# The cluster suite: its own tests, and the store contract suite over the Redis store.
CLUSTER_TEST_SRC := $(wildcard tests/cluster/*.c) tests/core/test_store.c tests/core/helpers.c \
                    tests/core/store_faulty.c
# tests/core/test_race.c runs a call just before the library takes a chosen mutex;
# tests/core/test_abi.c makes libsodium fail to start.
TEST_WRAP := -Wl,--wrap=pthread_mutex_lock,--wrap=sodium_init
TR_TEST_SRC := $(wildcard tests/transport/*.c) tests/lib/fyc.c
STRESS_SRC := tests/stress/stress.c

.PHONY: all lib cluster test-cluster examples install uninstall check test deps deps-simulate check-core check-transports test-core \
        test-js test-demo test-ops test-install test-failmalloc test-chaos test-lb test-cluster-e2e soak readme-picture test-asan test-tsan fuzz test-fuzz \
        bench-core bench bench-cluster bench-deps test-load demo demo-cluster clean

all: lib
lib: $(BUILD)/libferry.a $(BUILD)/libferry.so $(BUILD)/ferry.pc

$(BUILD)/obj/core/%.o: core/%.c $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(CORE_CFLAGS) -fPIC -fvisibility=hidden -DFERRY_BUILD -c $< -o $@

$(BUILD)/obj/transports/%.o: transports/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(TR_CFLAGS) -fPIC -fvisibility=hidden -DFERRY_BUILD -c $< -o $@

# The JS client is compiled into the library, so a service needs no file path to serve it.
$(JS_OBJ): transports/src/ferry_js.S js-client/ferry.js
	@mkdir -p $(@D)
	$(CC) -c -Ijs-client $< -o $@

$(BUILD)/libferry.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/libferry-core.a: $(CORE_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/cluster/%.o: cluster/%.c $(CORE_HDR) $(CLUSTER_HDR)
	@mkdir -p $(@D)
	$(CC) $(CLUSTER_CFLAGS) -fPIC -fvisibility=hidden -DFERRY_BUILD -c $< -o $@

# Link it with libferry.a (or libferry-core.a) and -lhiredis.
$(BUILD)/libferry-cluster.a: $(CLUSTER_OBJ)
	rm -f $@
	ar rcs $@ $^

cluster: $(BUILD)/libferry-cluster.a

$(BUILD)/libferry.so: $(LIB_OBJ)
	$(CC) -shared -pthread -Wl,-soname,$(SONAME) -o $@ $^ $(DEP_LIBS)

$(BUILD)/ferry.pc: ferry.pc.in Makefile core/include/ferry.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(BUILD)/ferry-cluster.pc: ferry-cluster.pc.in Makefile core/include/ferry.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# The ES module is the classic script plus two exports, as every mount serves it
# (transports/src/mount.c); test-install checks that the two are the same bytes.
$(BUILD)/ferry.mjs: js-client/ferry.js
	@mkdir -p $(@D)
	{ cat $<; printf '\nexport default globalThis.ferry;\nexport const connect = globalThis.ferry.connect;\n'; } > $@

install: lib cluster $(BUILD)/ferry.mjs $(BUILD)/ferry-cluster.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/share/ferry
	install -m 644 core/include/ferry.h core/include/ferry_transport.h \
	  transports/include/ferry_civetweb.h cluster/include/ferry_cluster.h \
	  $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libferry.a $(BUILD)/libferry-cluster.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(BUILD)/ferry-cluster.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(BUILD)/libferry.so $(DESTDIR)$(PREFIX)/lib/libferry.so.$(VERSION)
	ln -sf libferry.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libferry.so
	install -m 644 $(BUILD)/ferry.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 644 js-client/ferry.js $(BUILD)/ferry.mjs js-client/ferry.d.ts js-client/ferry.d.mts \
	  $(DESTDIR)$(PREFIX)/share/ferry/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/ferry.h $(DESTDIR)$(PREFIX)/include/ferry_transport.h \
	  $(DESTDIR)$(PREFIX)/include/ferry_civetweb.h $(DESTDIR)$(PREFIX)/include/ferry_cluster.h \
	  $(DESTDIR)$(PREFIX)/lib/libferry.* $(DESTDIR)$(PREFIX)/lib/libferry-cluster.a \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/ferry.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/ferry-cluster.pc
	rm -rf $(DESTDIR)$(PREFIX)/share/ferry

# ---- tests ---------------------------------------------------------------------------------
deps:
	@scripts/deps.sh

# What a fresh machine would install, simulated by apt: fails on any conflict or removal.
deps-simulate:
	@scripts/deps-simulate.sh

# core/ is sans-I/O: nothing in it may include civetweb.
check-core:
	@if grep -rnE '#[[:space:]]*include[[:space:]]*[<"]civetweb' core/; then \
	  echo "check-core: core/ must not include civetweb" >&2; exit 1; fi
	@echo "check-core: core/ is free of civetweb"

# Transports are adapters over the public headers: none may include a core/src header.
check-transports:
	@hdrs=$$(cd core/src && ls *.h); for h in $$hdrs; do \
	  if grep -rnE "#[[:space:]]*include[[:space:]]*[<\"]$$h[>\"]" transports/; then \
	    echo "check-transports: transports/ must use ferry_transport.h, not core/src/$$h" >&2; \
	    exit 1; fi; done
	@echo "check-transports: transports/ include public headers only"
	@scripts/fn-length.sh

$(BUILD)/test/core_tests: $(TEST_SRC) tests/core/*.h $(BUILD)/libferry-core.a
	@mkdir -p $(@D)
	$(CC) $(CORE_CFLAGS) $(CHECK_CFLAGS) $(TEST_SRC) $(BUILD)/libferry-core.a -o $@ $(CORE_LIBS) $(CHECK_LIBS) $(TEST_WRAP)

$(BUILD)/test/transport_tests: $(TR_TEST_SRC) tests/transport/*.h tests/lib/*.h $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(TR_CFLAGS) -Itests/lib $(CHECK_CFLAGS) $(TR_TEST_SRC) $(BUILD)/libferry.a -o $@ $(DEP_LIBS) $(CHECK_LIBS)

CLUSTER_TEST_CFLAGS = $(CLUSTER_CFLAGS) -Itests/core $(CHECK_CFLAGS)
CLUSTER_TEST_DEPS := $(CLUSTER_TEST_SRC) tests/cluster/*.h tests/core/*.h

$(BUILD)/test/cluster_tests: $(CLUSTER_TEST_DEPS) $(BUILD)/libferry-cluster.a $(BUILD)/libferry-core.a
	@mkdir -p $(@D)
	$(CC) $(CLUSTER_TEST_CFLAGS) $(CLUSTER_TEST_SRC) $(BUILD)/libferry-cluster.a $(BUILD)/libferry-core.a -o $@ $(CORE_LIBS) $(CLUSTER_LIBS) $(CHECK_LIBS)

# The cluster layer against real redis-servers the tests start on free loopback ports.
test-cluster: $(BUILD)/test/cluster_tests
	$(BUILD)/test/cluster_tests

# Sanitizer builds: the library's sources compiled once per sanitizer (SAN_FLAGS_asan,
# SAN_FLAGS_tsan) into archives under build/asan and build/tsan that each test program links.
SAN_FLAGS_asan := $(ASAN)
SAN_FLAGS_tsan := $(TSAN)
SAN_CORE_OBJ    = $(CORE_SRC:%.c=$(BUILD)/$(1)/obj/%.o)
SAN_LIB_OBJ     = $(call SAN_CORE_OBJ,$(1)) $(TR_SRC:%.c=$(BUILD)/$(1)/obj/%.o)
SAN_CLUSTER_OBJ = $(CLUSTER_SRC:%.c=$(BUILD)/$(1)/obj/%.o)

define SAN_RULES
$(BUILD)/$(1)/obj/core/%.o: core/%.c $(CORE_HDR)
	@mkdir -p $$(@D)
	$(CC) $$(CORE_CFLAGS) $(SAN_FLAGS_$(1)) -c $$< -o $$@

$(BUILD)/$(1)/obj/transports/%.o: transports/%.c $(LIB_HDR)
	@mkdir -p $$(@D)
	$(CC) $$(TR_CFLAGS) $(SAN_FLAGS_$(1)) -c $$< -o $$@

$(BUILD)/$(1)/obj/cluster/%.o: cluster/%.c $(CORE_HDR) $(CLUSTER_HDR)
	@mkdir -p $$(@D)
	$(CC) $$(CLUSTER_CFLAGS) $(SAN_FLAGS_$(1)) -c $$< -o $$@

$(BUILD)/$(1)/libferry-core.a: $(call SAN_CORE_OBJ,$(1))
	rm -f $$@
	ar rcs $$@ $$^

$(BUILD)/$(1)/libferry.a: $(call SAN_LIB_OBJ,$(1)) $(JS_OBJ)
	rm -f $$@
	ar rcs $$@ $$^

$(BUILD)/$(1)/libferry-cluster.a: $(call SAN_CLUSTER_OBJ,$(1))
	rm -f $$@
	ar rcs $$@ $$^

$(BUILD)/$(1)/core_tests: $(TEST_SRC) tests/core/*.h $(BUILD)/$(1)/libferry-core.a
	$(CC) $$(CORE_CFLAGS) $(SAN_FLAGS_$(1)) $$(CHECK_CFLAGS) $(TEST_SRC) $(BUILD)/$(1)/libferry-core.a -o $$@ $$(CORE_LIBS) $$(CHECK_LIBS) $(TEST_WRAP)

$(BUILD)/$(1)/transport_tests: $(TR_TEST_SRC) tests/transport/*.h tests/lib/*.h $(BUILD)/$(1)/libferry.a
	$(CC) $$(ALL_CFLAGS) -Itests/lib $(SAN_FLAGS_$(1)) $$(CHECK_CFLAGS) $(TR_TEST_SRC) $(BUILD)/$(1)/libferry.a -o $$@ $$(DEP_LIBS) $$(CHECK_LIBS)

$(BUILD)/$(1)/stress: $(STRESS_SRC) $(BUILD)/$(1)/libferry.a
	$(CC) $$(ALL_CFLAGS) $(SAN_FLAGS_$(1)) $(STRESS_SRC) $(BUILD)/$(1)/libferry.a -o $$@ $$(DEP_LIBS)

$(BUILD)/$(1)/cluster_tests: $(CLUSTER_TEST_DEPS) $(BUILD)/$(1)/libferry-cluster.a $(BUILD)/$(1)/libferry-core.a
	$(CC) $$(CLUSTER_TEST_CFLAGS) $(SAN_FLAGS_$(1)) $(CLUSTER_TEST_SRC) $(BUILD)/$(1)/libferry-cluster.a $(BUILD)/$(1)/libferry-core.a -o $$@ $$(CORE_LIBS) $$(CLUSTER_LIBS) $$(CHECK_LIBS)
endef
$(foreach san,asan tsan,$(eval $(call SAN_RULES,$(san))))

# The allocation-failure sweep (tests/failmalloc): core calls with their 1st, 2nd, ...
# allocation failing, through link-time wrapping (the library is built unchanged), under
# ASan+UBSan with LeakSanitizer.
FM_SRC  := $(wildcard tests/failmalloc/*.c) tests/core/helpers.c
FM_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=free

$(BUILD)/asan/failmalloc: $(FM_SRC) tests/failmalloc/*.h tests/core/helpers.h $(BUILD)/asan/libferry-core.a
	$(CC) $(CORE_CFLAGS) $(ASAN) $(CHECK_CFLAGS) -Itests/core $(FM_SRC) $(BUILD)/asan/libferry-core.a -o $@ $(CORE_LIBS) $(CHECK_LIBS) $(FM_WRAP)

test-failmalloc: $(BUILD)/asan/failmalloc
	$(ASAN_ENV) $(BUILD)/asan/failmalloc

# The transport suites run on event loops (the default), and those about WebSockets again
# on civetweb's workers (event_threads 0), the path TLS connections take.
WORKER_SUITES := websocket protocol drain

test-core: $(BUILD)/test/core_tests $(BUILD)/test/transport_tests
	$(BUILD)/test/core_tests
	$(BUILD)/test/transport_tests
	@for s in $(WORKER_SUITES); do echo "on civetweb's workers: $$s"; \
	  FERRY_TEST_EVENT_THREADS=0 CK_RUN_SUITE=$$s $(BUILD)/test/transport_tests || exit 1; done

ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1

ASAN_BIN := $(BUILD)/asan/core_tests $(BUILD)/asan/stress $(BUILD)/asan/transport_tests \
            $(BUILD)/asan/cluster_tests
TSAN_BIN := $(BUILD)/tsan/stress $(BUILD)/tsan/transport_tests $(BUILD)/tsan/core_tests \
            $(BUILD)/tsan/cluster_tests

# The sanitizer programs are built two at a time.
test-asan:
	@$(MAKE) --no-print-directory -j2 $(ASAN_BIN)
	$(ASAN_ENV) $(BUILD)/asan/core_tests
	$(ASAN_ENV) $(BUILD)/asan/cluster_tests
	$(ASAN_ENV) $(BUILD)/asan/stress
	$(ASAN_ENV) $(BUILD)/asan/transport_tests

# TSan needs the narrower address layout that setarch -R gives on kernels with 32-bit
# mmap randomization.
TSAN_ENV := TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=tests/tsan.supp"

test-tsan:
	@$(MAKE) --no-print-directory -j2 $(TSAN_BIN)
	$(TSAN_ENV) CK_FORK=no CK_RUN_SUITE=store setarch $$(uname -m) -R $(BUILD)/tsan/core_tests
	$(TSAN_ENV) CK_FORK=no setarch $$(uname -m) -R $(BUILD)/tsan/cluster_tests
	$(TSAN_ENV) setarch $$(uname -m) -R $(BUILD)/tsan/stress
	$(TSAN_ENV) CK_FORK=no setarch $$(uname -m) -R $(BUILD)/tsan/transport_tests

# The JS client against the real server, behind nginx, and in chromium (node's test runner).
js-client/node_modules/.package-lock.json: js-client/package.json js-client/package-lock.json
	cd js-client && npm ci --no-audit --no-fund
	@touch $@

# First tsc checks ferry.d.ts and ferry.d.mts against test/types.ts and test/types-esm.mts.
# The files mostly wait on timers and sockets: three at a time (each starts its own servers).
test-js: $(BUILD)/tests/js_server $(BUILD)/ferry.mjs js-client/node_modules/.package-lock.json
	cd js-client && node_modules/.bin/tsc -p test/tsconfig.json
	cd js-client && FERRY_MJS=$(abspath $(BUILD))/ferry.mjs node --test --test-concurrency=3 test/*.test.mjs

# The live-scores demo end to end in chromium, on one node and as a cluster (a node killed
# under the page); the screenshot goes to build/demo/.
test-demo: $(BUILD)/examples/live-scores $(BUILD)/examples/live-scores-cluster \
           js-client/node_modules/.package-lock.json
	node --test --test-concurrency=2 tests/demo/*.test.mjs

# examples/ops/: the Prometheus configurations and alerting rules checked by promtool, the
# rules' unit tests, and Debian's prometheus scraping the cluster demo on loopback
# (tests/ops; about 10 s).
test-ops: $(BUILD)/examples/live-scores-cluster js-client/node_modules/.package-lock.json
	promtool check config examples/ops/prometheus.yml examples/ops/prometheus-cluster.yml
	promtool check rules examples/ops/ferry-alerts.yml
	cd examples/ops && promtool test rules ferry-alerts.test.yml
	node --test tests/ops/*.test.mjs

# Refreshes the README's picture of the demo (a deliberate step, never part of make test).
readme-picture: $(BUILD)/examples/live-scores js-client/node_modules/.package-lock.json
	DEMO_SCREENSHOT=$(CURDIR)/docs/live-scores.png node --test tests/demo/demo.test.mjs

# The fast loop: no apt, no npm, no browser.
check: check-core check-transports
	@pkg-config --exists jansson libsodium check hiredis && [ -f /usr/include/civetweb.h ] && \
	  command -v redis-server >/dev/null || { \
	  echo "make check: libraries are missing; run 'make deps' as root (or make test)" >&2; exit 1; }
	$(MAKE) --no-print-directory lib cluster
	$(MAKE) --no-print-directory test-core
	$(MAKE) --no-print-directory test-cluster
	$(MAKE) --no-print-directory test-failmalloc

# Everything, from a clean checkout; it must leave the work tree as it found it.
test: deps
	@scripts/tree-state.sh save $(BUILD)/tree-state
	$(MAKE) deps-simulate
	$(MAKE) check
	$(MAKE) test-install
	$(MAKE) test-js
	$(MAKE) test-demo
	$(MAKE) test-ops
	$(MAKE) test-load
	$(MAKE) test-chaos
	$(MAKE) test-lb
	$(MAKE) test-cluster-e2e
	$(MAKE) test-asan
	$(MAKE) test-tsan
	$(MAKE) test-fuzz
	@scripts/tree-state.sh check $(BUILD)/tree-state

# make install into a scratch root, then services built with pkg-config alone: the echo
# example and the README's embedding snippet.
test-install: js-client/node_modules/.package-lock.json
	node --test tests/install/*.test.mjs

# ---- fuzzing (libFuzzer, clang, ASan+UBSan) -------------------------------------------------
FUZZ_CC      ?= clang
FUZZ_FLAGS   := -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all $(INCLUDES) $(DEP_CFLAGS)
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(LIB_HDR) $(JS_OBJ)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $< $(LIB_SRC) $(JS_OBJ) -o $@ $(DEP_LIBS)

# Each target runs for FUZZ_SECONDS from its seed corpus (tests/fuzz/corpus/<name>); new
# inputs go to build/fuzz/corpus-<name>, never into the repository.
# The targets are built and run two at a time (scripts/fuzz-one.sh runs one).
fuzz:
	@$(MAKE) --no-print-directory -j2 $(FUZZ_TARGETS)
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P2 -I{} scripts/fuzz-one.sh {} $(FUZZ_SECONDS) $(BUILD)/fuzz
	@echo "fuzz: every target passed"

test-fuzz:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

# ---- benchmarks and demo -------------------------------------------------------------------
$(BUILD)/bench/core_publish: bench/core_publish.c $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -O2 $< $(BUILD)/libferry.a -o $@ $(DEP_LIBS)

bench-core: deps $(BUILD)/bench/core_publish
	$(BUILD)/bench/core_publish

# The load generator and the servers it measures (bench/README.md).
$(BUILD)/bench/fyload: bench/fyload.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -O2 $< -o $@ $(DEP_LIBS)

# With REDIS=host:port NODE=name in its environment it is a cluster member.
$(BUILD)/bench/ferry_bench: bench/servers/ferry_bench.c bench/servers/bench_ctl.h $(BUILD)/libferry.a \
                            $(BUILD)/libferry-cluster.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icluster/include -O2 $< $(BUILD)/libferry-cluster.a $(BUILD)/libferry.a \
	  -o $@ $(DEP_LIBS) $(CLUSTER_LIBS)

$(BUILD)/bench/civetweb_bench: bench/servers/civetweb_bench.c bench/servers/bench_ctl.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -O2 $< -o $@ $(DEP_LIBS)

BENCH_BIN := $(BUILD)/bench/fyload $(BUILD)/bench/ferry_bench $(BUILD)/bench/civetweb_bench

bench/peers/node_modules/.package-lock.json: bench/peers/package.json bench/peers/package-lock.json
	cd bench/peers && npm ci --no-audit --no-fund
	@touch $@

# ferry, Socket.IO, ws and bare civetweb side by side (REPS, STEP, NS, ONLY: bench/run.mjs);
# rewrites the generated part of docs/BENCHMARKS.md and docs/bench-*.png.
bench: bench-deps $(BENCH_BIN) bench/peers/node_modules/.package-lock.json
	node bench/run.mjs
	node bench/report.mjs
	node bench/cluster.mjs

# ferry as a cluster: one node against three on one redis-server, kill -9 of a node beside
# Socket.IO's Redis Streams adapter, Redis bytes, a rolling restart (bench/cluster.mjs;
# QUICK=1 for a small pass, SCENARIOS=rolling for that alone); rewrites the cluster part of
# docs/BENCHMARKS.md.
bench-cluster: bench-deps $(BENCH_BIN) bench/peers/node_modules/.package-lock.json
	node bench/cluster.mjs

bench-deps:
	@scripts/deps.sh bench

# nginx and HAProxy from the templates in examples/cluster/ in front of ferry nodes:
# WebSocket and long-polling through them, heartbeats, the client's address, stickiness by
# session, a dead node, a draining node, a node that drains before a restart (tests/lb,
# docs/CLUSTER.md; about 25 s).
test-lb: $(BUILD)/tests/lb_server js-client/node_modules/.package-lock.json
	node --test tests/lb/*.test.mjs

# Faults at random bytes, blackholes, transport switches, nginx in the path, and a history
# checker over both directions (tests/chaos, docs/CHAOS.md); then the reproductions of what
# it found.
test-chaos: lib js-client/node_modules/.package-lock.json
	node --test tests/chaos/chaos.test.mjs tests/chaos/findings.test.mjs

# Three cluster nodes, a publisher and a real redis-server behind a front the test runs:
# kill -9 of nodes under load on both transports, long-polling with every request on another
# node, and resumes racing across nodes (tests/cluster-e2e).
$(BUILD)/tests/cluster-e2e-node: tests/cluster-e2e/node.c tests/lib/test_app.h $(BUILD)/libferry-cluster.a \
                                  $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -Icore/include -Itransports/include -Icluster/include -Itests/lib \
	  $(shell pkg-config --cflags hiredis) $< \
	  $(BUILD)/libferry-cluster.a $(BUILD)/libferry.a -o $@ $(DEP_LIBS) $(CLUSTER_LIBS)

test-cluster-e2e: $(BUILD)/tests/cluster-e2e-node js-client/node_modules/.package-lock.json
	E2E_NODE_BIN=$(abspath $(BUILD))/tests/cluster-e2e-node node --test --test-concurrency=1 tests/cluster-e2e/*.test.mjs

# Churn for SOAK_SECONDS; RSS, descriptors and threads must return to their baseline.
SOAK_SECONDS ?= 1800
soak: lib js-client/node_modules/.package-lock.json
	SOAK_SECONDS=$(SOAK_SECONDS) node tests/chaos/soak.mjs

# The load generator against ferry, briefly: zero loss and zero duplicates on both transports.
test-load: $(BENCH_BIN)
	node --test tests/load/*.test.mjs

$(BUILD)/examples/%: examples/%/*.c $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(filter %.c,$^) $(BUILD)/libferry.a -o $@ $(DEP_LIBS)

examples: $(BUILD)/examples/echo $(BUILD)/examples/replay $(BUILD)/examples/live-scores

$(BUILD)/tests/js_server: tests/js/server.c $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< $(BUILD)/libferry.a -o $@ $(DEP_LIBS)

# A node for tests/lb, a cluster member when given a Redis address.
$(BUILD)/tests/lb_server: tests/lb/server.c $(BUILD)/libferry-cluster.a $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icluster/include $< $(BUILD)/libferry-cluster.a $(BUILD)/libferry.a -o $@ $(DEP_LIBS) $(CLUSTER_LIBS)

$(BUILD)/examples/replay: examples/replay/replay.c $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< $(BUILD)/libferry.a -o $@ $(DEP_LIBS)

# The live-scores demo on 127.0.0.1:8080 (PORT overrides; NO_WEBSOCKET=1 shows the fallback).
demo:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory $(BUILD)/examples/live-scores
	$(BUILD)/examples/live-scores examples/live-scores/www

# The same server built as a cluster member (server.c, LIVE_SCORES_CLUSTER): a web node or
# the publisher, chosen by its environment.
$(BUILD)/examples/live-scores $(BUILD)/examples/live-scores-cluster: examples/live-scores/scores.h

$(BUILD)/examples/live-scores-cluster: examples/live-scores/*.c $(BUILD)/libferry-cluster.a $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Icluster/include -DLIVE_SCORES_CLUSTER $(filter %.c,$^) \
	  $(BUILD)/libferry-cluster.a $(BUILD)/libferry.a -o $@ $(DEP_LIBS) $(CLUSTER_LIBS)

# Redis, the publisher, three nodes and nginx on 127.0.0.1:8080 (PORT overrides); Ctrl-C
# stops them all (scripts/demo-cluster.sh).
demo-cluster:
	@scripts/deps.sh cluster
	@$(MAKE) --no-print-directory $(BUILD)/examples/live-scores-cluster
	scripts/demo-cluster.sh

clean:
	rm -rf $(BUILD)
