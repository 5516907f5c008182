# Build and install oxinetd without a package (README, "Install").
#
#   make                     cargo build --release
#   sudo make install        into /usr/local, config in /etc/oxinetd
#   make install DESTDIR=/tmp/root PREFIX=/usr     (for a distribution)
#
# The packages use the same layout: `cargo deb` (Cargo.toml) and
# packaging/rpm/oxinetd.spec, which calls `make install`.

PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
# oxinetd looks for oxinetd-tls beside itself, else in ../libexec/oxinetd
# from its own directory: keep LIBEXECDIR and SBINDIR siblings.
LIBEXECDIR ?= $(PREFIX)/libexec
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/oxinetd
# /etc, not $(PREFIX)/etc: it is where oxinetd looks by default.
SYSCONFDIR ?= /etc
# systemd reads units from /usr/local/lib/systemd/system too.
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# Debian's zsh reads /usr/share/zsh/vendor-completions; others (and every
# zsh for /usr/local) site-functions.
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d

CARGO ?= cargo
CARGO_TARGET_DIR ?= target
# The binary to install: the release build, or any other (BIN=path, e.g.
# the static musl build).
BIN ?= $(CARGO_TARGET_DIR)/release/oxinetd
# The TLS relay, built beside it (TLS_BIN=path for another build).
TLS_BIN ?= $(dir $(BIN))oxinetd-tls

INSTALL ?= install
CONFIG := $(DESTDIR)$(SYSCONFDIR)/oxinetd/oxinetd.toml

.PHONY: all install uninstall completions

all:
	$(CARGO) build --release --locked

# No build here: `sudo make install` must not build as root in the
# checkout. An existing config is kept, as a package manager would.
install:
	@test -x '$(BIN)' || { echo "make install: $(BIN) is missing: run 'make' first, or give BIN=path" >&2; exit 1; }
	@test -x '$(TLS_BIN)' || { echo "make install: $(TLS_BIN) is missing: run 'make' first, or give TLS_BIN=path" >&2; exit 1; }
	$(INSTALL) -d '$(DESTDIR)$(SBINDIR)' '$(DESTDIR)$(LIBEXECDIR)/oxinetd' '$(DESTDIR)$(MANDIR)/man8' '$(DESTDIR)$(MANDIR)/man5' \
		'$(DESTDIR)$(UNITDIR)' '$(DESTDIR)$(SYSCONFDIR)/oxinetd/conf.d' '$(DESTDIR)$(DOCDIR)/examples' \
		'$(DESTDIR)$(SYSCONFDIR)/fail2ban/filter.d' '$(DESTDIR)$(SYSCONFDIR)/fail2ban/jail.d' \
		'$(DESTDIR)$(BASHCOMPDIR)' '$(DESTDIR)$(ZSHCOMPDIR)' '$(DESTDIR)$(FISHCOMPDIR)'
	$(INSTALL) -m 755 '$(BIN)' '$(DESTDIR)$(SBINDIR)/oxinetd'
	$(INSTALL) -m 755 '$(TLS_BIN)' '$(DESTDIR)$(LIBEXECDIR)/oxinetd/oxinetd-tls'
	gzip -9nc packaging/man/oxinetd.8 > '$(DESTDIR)$(MANDIR)/man8/oxinetd.8.gz'
	gzip -9nc packaging/man/oxinetd.toml.5 > '$(DESTDIR)$(MANDIR)/man5/oxinetd.toml.5.gz'
	sed -e 's|/usr/sbin/oxinetd|$(SBINDIR)/oxinetd|g' -e 's|/etc/oxinetd/|$(SYSCONFDIR)/oxinetd/|g' \
		packaging/systemd/oxinetd.service > '$(DESTDIR)$(UNITDIR)/oxinetd.service'
	chmod 644 '$(DESTDIR)$(UNITDIR)/oxinetd.service'
	@if [ -e '$(CONFIG)' ]; then echo "make install: keeping the existing $(CONFIG)"; \
	else echo "$(INSTALL) -m 644 etc/packaged.toml $(CONFIG)"; $(INSTALL) -m 644 etc/packaged.toml '$(CONFIG)'; fi
	$(INSTALL) -m 644 packaging/conf.d/README '$(DESTDIR)$(SYSCONFDIR)/oxinetd/conf.d/README'
	$(INSTALL) -m 644 packaging/fail2ban/filter.d/oxinetd.conf '$(DESTDIR)$(SYSCONFDIR)/fail2ban/filter.d/oxinetd.conf'
	$(INSTALL) -m 644 packaging/fail2ban/jail.d/oxinetd.conf '$(DESTDIR)$(SYSCONFDIR)/fail2ban/jail.d/oxinetd.conf'
	$(INSTALL) -m 644 packaging/completions/oxinetd.bash '$(DESTDIR)$(BASHCOMPDIR)/oxinetd'
	$(INSTALL) -m 644 packaging/completions/_oxinetd '$(DESTDIR)$(ZSHCOMPDIR)/_oxinetd'
	$(INSTALL) -m 644 packaging/completions/oxinetd.fish '$(DESTDIR)$(FISHCOMPDIR)/oxinetd.fish'
	$(INSTALL) -m 644 README.md LICENSE-MIT LICENSE-APACHE '$(DESTDIR)$(DOCDIR)/'
	$(INSTALL) -m 644 etc/oxinetd.toml '$(DESTDIR)$(DOCDIR)/examples/oxinetd.toml'

# Leaves the config in $(SYSCONFDIR)/oxinetd and the fail2ban filter and
# jail, as a package's remove does.
uninstall:
	rm -f '$(DESTDIR)$(SBINDIR)/oxinetd' '$(DESTDIR)$(LIBEXECDIR)/oxinetd/oxinetd-tls' '$(DESTDIR)$(MANDIR)/man8/oxinetd.8.gz' \
		'$(DESTDIR)$(MANDIR)/man5/oxinetd.toml.5.gz' '$(DESTDIR)$(UNITDIR)/oxinetd.service' \
		'$(DESTDIR)$(BASHCOMPDIR)/oxinetd' '$(DESTDIR)$(ZSHCOMPDIR)/_oxinetd' \
		'$(DESTDIR)$(FISHCOMPDIR)/oxinetd.fish'
	rm -rf '$(DESTDIR)$(DOCDIR)'
	-rmdir '$(DESTDIR)$(LIBEXECDIR)/oxinetd' 2>/dev/null

# After a change to the command line (src/cli.rs); a test compares them.
completions: all
	$(BIN) completions bash > packaging/completions/oxinetd.bash
	$(BIN) completions zsh > packaging/completions/_oxinetd
	$(BIN) completions fish > packaging/completions/oxinetd.fish
