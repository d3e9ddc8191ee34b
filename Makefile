# Two commands do all set-up on a fresh Debian machine:
#   make demo   build and run the demo on the embedded Bình Sơn district
#   make demo-console   the same demo, then the district stays up with its web console (Ctrl-C stops it)
#   make test   build and run every test
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

deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
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

test: build test-deps
	@rm -f $(SKIP_LEDGER)
	RADIO_REQUIRE_TOOLS=1 RADIO_SKIP_LEDGER=$(abspath $(SKIP_LEDGER)) \
	  $(CARGO) test --workspace --no-fail-fast; status=$$?; \
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
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(DEB_APT_PACKAGES)"
	@command -v cargo-deb >/dev/null || { \
	  echo "installing cargo-deb (builds the .deb packages)"; \
	  $(CARGO) install --locked cargo-deb; }

deb: deps deb-deps
	$(CARGO) build --release --bins -p radio-server -p relay-agent
	rm -rf $(TARGET_DIR)/release/manual $(DEB_DIR)
	$(TARGET_DIR)/release/radio-server manual --out $(TARGET_DIR)/release/manual/radio-server
	$(TARGET_DIR)/release/relay-agent manual --out $(TARGET_DIR)/release/manual/relay-agent
	$(CARGO) deb --no-build -p radio-server
	$(CARGO) deb --no-build -p relay-agent
	lintian --fail-on error --suppress-tags-from-file packaging/lintian-overrides.txt $(DEB_DIR)/*.deb

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
