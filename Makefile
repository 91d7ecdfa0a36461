# Thin wrapper over meson: every target installs what it lacks first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
# the compiler of the ASan build (meson takes $CC, else cc): its
# sanitizer runtimes are the ones preloaded into Dovecot (gcc's
# libasan/libubsan)
ASAN_CC    ?= $(CC)
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
MESON_TEST_ARGS ?=
# Extra `meson setup` options for every build dir; CI passes --werror so
# that a warning fails the run instead of scrolling by.
MESON_SETUP_ARGS ?=

.PHONY: all deps build demo check check-asan fuzz clean format
.PHONY: deb rpm check-packages check-dovecot24 check-packages-dovecot24

all: build

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(MESON_SETUP_ARGS) $(BUILD)

build: deps $(BUILD)/build.ninja
	meson compile -C $(BUILD)

# The main job of the README: the incident replayed with real Dovecot,
# Postfix, the milter and the plugin.  DEMO_ARGS=--users 200 --messages 50000
# scales it up.
DEMO_ARGS ?=
demo: build
	/usr/bin/python3 demo/run_demo.py --build $(BUILD) $(DEMO_ARGS)

# The test command of the README: every test, real Dovecot/Postfix included.
check: build
	meson test -C $(BUILD) --print-errorlogs $(MESON_TEST_ARGS)

# The same `make check` against Dovecot 2.4: in a Debian 13 root made with
# mmdebstrap (scripts/debian13-root) and cached in DC24_DIR/root (made
# again when install-deps' Debian 13 package list changes), with this tree
# bind-mounted at /backfill and built in DC24_DIR/build.  Root only (chroot, mounts in a private
# namespace: nothing stays mounted).
DC24_DIR ?= build-dovecot24
# Extra `meson setup` options for the root's build dir only.
DC24_SETUP_ARGS ?=
# The milter's own tests do not depend on the Dovecot release (suite
# dovecot-independent, see tests/milter/meson.build): left out in the root.
DC24_TEST_ARGS ?= --no-suite dovecot-independent
check-dovecot24: deps
	scripts/debian13-root $(DC24_DIR)/root
	@# a build dir configured with other options is made again
	args='$(MESON_SETUP_ARGS) $(DC24_SETUP_ARGS)'; \
	if [ "$$(cat $(DC24_DIR)/build-args 2>/dev/null)" != "$$args" ]; then \
		rm -rf $(DC24_DIR)/build; echo "$$args" >$(DC24_DIR)/build-args; \
	fi
	scripts/in-root --bind $(CURDIR):/backfill $(DC24_DIR)/root \
		make -C /backfill check BUILD=$(DC24_DIR)/build \
		MESON_SETUP_ARGS='$(MESON_SETUP_ARGS) $(DC24_SETUP_ARGS)' \
		MESON_TEST_ARGS='$(DC24_TEST_ARGS) $(MESON_TEST_ARGS)'

# Unit tests, and the milter's protocol and daemon tests (the daemon
# itself built with the sanitizers), again under AddressSanitizer and
# UndefinedBehaviorSanitizer.
ASAN_MILTER_TESTS ?= milter-protocol milter-hostile milter-peers milter-daemon
# Integration tests of the plugin, doveadm and backfillctl (accounts,
# report) with the ASan+UBSan build of both plugins loaded by the real
# Dovecot: its binaries are not instrumented, so tests/lib/dovecot.py
# preloads the sanitizer runtimes
# (BACKFILL_SANITIZE_PRELOAD) into every Dovecot and doveadm process and
# fails a test on any report.  A subset, for the CI budget: the slow POP3,
# kill, crash and parallel-run tests are left to `make check` (run by hand
# under ASan on 2026-12-06, all passing: `make check-asan
# ASAN_INTEGRATION_TESTS="test_merge_crash test_merge_pop3
# test_merge_renumber test_merge_cut_twice test_doveadm_escape
# test_imap_clients"`).
ASAN_INTEGRATION_TESTS ?= test_merge_basic test_merge_robust test_merge_uidl \
	test_merge_staged test_merge_symlinks test_merge_private_dir \
	test_merge_locked_store test_merge_full_disk test_merge_mdbox \
	test_doveadm_plan test_doveadm_revert test_doveadm_revert_fingerprint \
	test_doveadm_verify test_report test_accounts \
	test_merge_landed_bytes test_merge_renumber_windows \
	test_doveadm_revert_renumber test_merge_mdbox_alt
check-asan: deps
	[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(MESON_SETUP_ARGS) \
		$(ASAN_BUILD) \
		-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	meson compile -C $(ASAN_BUILD)
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ASAN_OPTIONS=detect_leaks=1 \
	meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ASAN_OPTIONS=detect_leaks=1 \
	meson test -C $(ASAN_BUILD) --print-errorlogs $(ASAN_MILTER_TESTS)
	BACKFILL_SANITIZE_PRELOAD="$$($(ASAN_CC) -print-file-name=libasan.so):$$($(ASAN_CC) -print-file-name=libubsan.so)" \
	meson test -C $(ASAN_BUILD) --print-errorlogs $(ASAN_INTEGRATION_TESTS)

# libFuzzer targets, each run for FUZZ_SECONDS.
fuzz: deps
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup \
		$(MESON_SETUP_ARGS) $(FUZZ_BUILD) \
		-Dfuzz=true -Db_lundef=false -Dbuildtype=debugoptimized
	meson compile -C $(FUZZ_BUILD)
	scripts/run-fuzzers $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Packages (packaging/): .deb and .rpm of the committed tree (HEAD; set
# BACKFILL_TREE=worktree for the working tree) into build-packages/.
deb: deps
	packaging/build-deb

rpm: deps
	packaging/build-rpm

# Builds, installs (for a few seconds), uses, purges and checks both .debs;
# builds the .rpms and lists them.  Root only.
check-packages: deps
	tests/packaging/check-packages

# The same package check against Dovecot 2.4, in the Debian 13 root of
# check-dovecot24: the .debs built there (depending on dovecot-abi-2.4.abiv1),
# installed, enabled as 90-backfill.conf says, merging, removed, purged.
# The RPM part is left to check-packages (RHEL's Dovecot is 2.3).
check-packages-dovecot24: deps
	scripts/debian13-root $(DC24_DIR)/root
	scripts/in-root --bind $(CURDIR):/backfill $(DC24_DIR)/root \
		/backfill/tests/packaging/check-packages --deb-only

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
