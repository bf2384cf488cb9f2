#!/usr/bin/env bash
# Builds the .deb: the release binary, its man page and bash completions, the hardened
# systemd unit and /etc/default/liveweb (every setting, commented), with a postinst that
# creates the liveweb user and /var/lib/liveweb. Needs cargo-deb (installed if missing).
# Output: target/debian/liveweb_<version>-1_<arch>.deb (the path is printed last).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked --quiet cargo-deb
cargo build --release --quiet
target/release/liveweb man | gzip -9n > target/release/liveweb.1.gz
target/release/liveweb completions bash > target/release/liveweb.bash
cargo deb --no-build --quiet
ls -t target/debian/liveweb_*.deb | head -1
