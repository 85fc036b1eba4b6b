# Builds and installs foundry-batch as one binary with the Swift runtime linked in, so cron
# and other machines of the same kind run it without a Swift toolchain.
#   make install                 # /usr/local/bin/foundry-batch (as root)
#   make install PREFIX=$HOME/.local
#   make uninstall
PREFIX ?= /usr/local
BINDIR = $(DESTDIR)$(PREFIX)/bin
BUILD = .build/install

.PHONY: build install uninstall

build:
	swift build -c release --product foundry-batch --static-swift-stdlib --scratch-path $(BUILD)

install: build
	install -d "$(BINDIR)"
	install -m 755 "$$(swift build -c release --product foundry-batch --static-swift-stdlib --scratch-path $(BUILD) --show-bin-path)/foundry-batch" "$(BINDIR)/foundry-batch"
	@echo "installed $(BINDIR)/foundry-batch"

uninstall:
	rm -f "$(BINDIR)/foundry-batch"
	@echo "removed $(BINDIR)/foundry-batch"
