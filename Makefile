# Two commands do all set-up on a fresh Debian machine:
#   make demo   build and run the demo on the embedded Bình Sơn district
#   make demo-console   the same demo, then the district stays up with its web console (Ctrl-C stops it)
#   make test   build and run every test
#   make cross  build the agent and the server for aarch64 and armv7 boards (see its block below)
#   make fuzz   run every cargo-fuzz target FUZZ_RUNS times (fuzz/README.md; not part of test)
# System packages: cmake (builds the bundled libopus), pkg-config, ffmpeg (a real RTP sender and
# receiver and format encoder for the interop tests), icecast2 (a real upstream station for the
# relay tests), chromium and chromium-driver with a font that has Vietnamese (the dashboard's
# browser test), firefox-esr and pulseaudio (the console's live page in Firefox, whose Web Audio
# needs a sound server; its WebDriver server, geckodriver, comes from crates.io with
# `cargo install`), GStreamer (an RTCP-reporting receiver for the cluster health test), sox (a
# studio's PCM source for the pipe ingest) and espeak-ng (Vietnamese speech for the live input
# tests, and the console's text-to-speech engine on a real server). As root they are installed with apt-get; otherwise the exact command is printed.
# `make test` runs with RADIO_REQUIRE_TOOLS=1: a test that would skip for want of one of them
# fails instead, and any skip recorded in the ledger (SKIP_LEDGER) fails the run.

SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := cmake pkg-config ffmpeg icecast2 chromium chromium-driver fonts-liberation \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good sox espeak-ng firefox-esr pulseaudio pulseaudio-utils
# Where the test tools (test-tools/) append every skip: the target directory's.
SKIP_LEDGER := $(or $(CARGO_TARGET_DIR),target)/skipped-tests.log
DEMO_ARGS ?=
FUZZ_RUNS ?= 10000000

.PHONY: all deps build demo demo-console test test-deps deb deb-deps fuzz fmt clippy clean

all: build

# $(call apt_install,PACKAGES): installs the missing ones as root, else prints the command.
define apt_install
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "run: sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi
endef

deps:
	$(call apt_install,$(APT_PACKAGES))
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs (rustup default stable)"; exit 1; }

build: deps
	$(CARGO) build --bins -p radio-server -p relay-agent

demo: build
	$(CARGO) run -q -p radio-server --bin radio-server -- demo $(DEMO_ARGS)

demo-console: build
	$(CARGO) run -q -p radio-server --bin radio-server -- demo --keep-running $(DEMO_ARGS)

# A skip panics under RADIO_REQUIRE_TOOLS; the ledger also catches one whose panic was lost
# (in a thread nobody joined).
# Firefox's WebDriver server is not packaged by Debian; Mozilla publishes it on crates.io.
test-deps:
	@command -v geckodriver >/dev/null || { \
	  echo "installing geckodriver (Firefox's WebDriver server, for the console's Firefox test)"; \
	  $(CARGO) install --locked geckodriver; }

# The aarch64 unit tests are built in the release profile: they share every dependency with the
# release agent `cross-agent-aarch64` built (a debug build for the target would double the time).
test: build test-deps cross-agent-aarch64 deb
	@rm -f $(SKIP_LEDGER)
	RADIO_REQUIRE_TOOLS=1 RADIO_SKIP_LEDGER=$(abspath $(SKIP_LEDGER)) RADIO_AARCH64_AGENT=$(AARCH64_AGENT) \
	  RADIO_DEB_DIR=$(abspath $(DEB_DIR)) $(CARGO) test --workspace --no-fail-fast; status=$$?; \
	RADIO_REQUIRE_TOOLS=1 RADIO_SKIP_LEDGER=$(abspath $(SKIP_LEDGER)) \
	  $(CARGO) test --release -p relay-agent --lib --target aarch64-unknown-linux-gnu --no-fail-fast || status=1; \
	if [ -s $(SKIP_LEDGER) ]; then \
	  echo "tests tried to skip (make test runs every one):"; cat $(SKIP_LEDGER); exit 1; \
	fi; exit $$status

# Debian packages of both programs (packaging/, [package.metadata.deb] in server/ and
# relay-agent/): release binaries, man pages and completions generated from the CLIs, systemd
# units. lintian must report no error. The packages land in DEB_DIR.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
DEB_DIR := $(TARGET_DIR)/debian
DEB_APT_PACKAGES := lintian systemd-container dpkg-dev

deb-deps:
	$(call apt_install,$(DEB_APT_PACKAGES))
	@command -v cargo-deb >/dev/null || { \
	  echo "installing cargo-deb (builds the .deb packages)"; \
	  $(CARGO) install --locked cargo-deb; }

deb: deps deb-deps
	$(CARGO) build --release --bins -p radio-server -p relay-agent
	rm -rf $(TARGET_DIR)/release/manual $(DEB_DIR)
	$(TARGET_DIR)/release/radio-server manual --out $(TARGET_DIR)/release/manual/radio-server
	$(TARGET_DIR)/release/relay-agent manual --out $(TARGET_DIR)/release/manual/relay-agent
	gzip -9n $(TARGET_DIR)/release/manual/*/man/man1/*.1
	$(CARGO) deb --no-build -p radio-server
	$(CARGO) deb --no-build -p relay-agent
	lintian --fail-on error $(DEB_DIR)/*.deb

# ---- Cross-building for ARM boards (`make cross`) ----
# The agent and the server for the boards a commune cabinet holds, with Debian's cross
# toolchains; the linkers and the qemu-user runners are in .cargo/config.toml. The bundled
# libopus is cross-built by its crate's build script through cmake (it picks the target's gcc
# itself). The release profile: what a station runs, and fast enough for the agent to keep up
# with real time under qemu in `make test`. Binaries land in
# $(CROSS_TARGET_DIR)/<target>/release/.
CROSS_TARGETS := aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
CROSS_APT_PACKAGES := cmake gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf \
	libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user
CROSS_TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# The aarch64 agent that `make test` runs under qemu (tests/tests/arm_agent.rs).
AARCH64_AGENT := $(abspath $(CROSS_TARGET_DIR)/aarch64-unknown-linux-gnu/release/relay-agent)

.PHONY: cross cross-deps cross-agent-aarch64

cross-deps:
	$(call apt_install,$(CROSS_APT_PACKAGES))
	@command -v rustup >/dev/null || { echo "rustup not found: install Rust from https://rustup.rs"; exit 1; }
	@installed="$$(rustup target list --installed)"; \
	for t in $(CROSS_TARGETS); do \
	  grep -qx "$$t" <<<"$$installed" || rustup target add "$$t"; \
	done

cross: cross-deps
	@set -e; for t in $(CROSS_TARGETS); do \
	  $(CARGO) build --release --target $$t --bins -p radio-server -p relay-agent; \
	done

cross-agent-aarch64: cross-deps
	$(CARGO) build --release --target aarch64-unknown-linux-gnu --bin relay-agent -p relay-agent
# ---- end of cross-building ----

# One target after the other, never in parallel: the targets are listed by fuzz/run.sh --list
# (the [[bin]] entries of fuzz/Cargo.toml). Needs cargo-fuzz; see fuzz/README.md.
fuzz:
	@set -e; for t in $$(fuzz/run.sh --list); do fuzz/run.sh $$t $(FUZZ_RUNS); done

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --workspace --all-targets

clean:
	$(CARGO) clean
	rm -rf demo-out
