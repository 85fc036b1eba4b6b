# Builds foundry-batch as one binary with the Swift runtime linked in, and installs it, so
# cron and other machines of the same kind run it without a Swift toolchain:
#   make build                          # as yourself: about 13 minutes the first time
#   sudo make install                   # /usr/local/bin/foundry-batch; copies only
#   make install PREFIX=$HOME/.local    # elsewhere, no root needed
#   sudo make uninstall
# At run time the binary needs the system's SQLite, C++ and zlib libraries (Debian:
# libsqlite3-0, libstdc++6, zlib1g), which every Debian or Ubuntu machine has.
PREFIX ?= /usr/local
BINDIR = $(DESTDIR)$(PREFIX)/bin
SCRATCH = .build/install
BINARY = $(SCRATCH)/release/foundry-batch

.PHONY: build install uninstall

build:
	swift build -c release --product foundry-batch --static-swift-stdlib --scratch-path $(SCRATCH)

# Copies what `make build` made, so root never compiles (nor needs swift on its PATH).
install:
	@test -x "$(BINARY)" || { echo "no $(BINARY): run make build first (as yourself)"; exit 1; }
	install -d "$(BINDIR)"
	install -m 755 "$(BINARY)" "$(BINDIR)/foundry-batch"
	@echo "installed $(BINDIR)/foundry-batch"

uninstall:
	rm -f "$(BINDIR)/foundry-batch"
	@echo "removed $(BINDIR)/foundry-batch"
