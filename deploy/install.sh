#!/usr/bin/env bash
# Installs Tollgate on this machine: the binary, the systemd unit, and an
# example configuration (kept if one is already there). Run as root from the
# repository: `sudo deploy/install.sh`. Then edit /etc/tollgate/tollgate.toml
# (or keep the example), put provider keys in /etc/tollgate/credentials.env,
# and `systemctl enable --now tollgate`.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
cargo build --release --locked --bin tollgate
install -D -m 0755 target/release/tollgate "$PREFIX/bin/tollgate"
install -D -m 0644 deploy/tollgate.service /etc/systemd/system/tollgate.service
install -d -m 0755 /etc/tollgate
if [ ! -e /etc/tollgate/tollgate.toml ]; then
    # The example, with records and the ledger in the unit's own directories.
    sed -e '/^\[server\]/a ledger_file = "/var/lib/tollgate/ledger"' examples/tollgate.toml >/etc/tollgate/tollgate.toml
    printf '\n[logging]\ndir = "/var/log/tollgate"\n' >>/etc/tollgate/tollgate.toml
fi
[ -e /etc/tollgate/credentials.env ] || install -m 0600 /dev/null /etc/tollgate/credentials.env
install -D -m 0644 README.md /usr/share/doc/tollgate/README.md
"$PREFIX/bin/tollgate" check-config /etc/tollgate/tollgate.toml
systemctl daemon-reload 2>/dev/null || true
echo "installed; start with: systemctl enable --now tollgate"
