#!/usr/bin/env bash
# Builds the .deb: the release binary, its man page and bash completions, the hardened
# systemd unit and /etc/default/liveweb (every setting, commented), with a postinst that
# creates the liveweb user and /var/lib/liveweb. Needs cargo-deb (installed if missing).
# Output: target/debian/liveweb_<version>-1_<arch>.deb, under $CARGO_TARGET_DIR when set
# (the path is printed last).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked --quiet cargo-deb
# cargo-deb reads the `target/release/` assets of Cargo.toml from the real target directory
# (CARGO_TARGET_DIR, or build.target-dir of a cargo config), as cargo metadata says.
TARGET=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --quiet
"$TARGET/release/liveweb" man | gzip -9n > "$TARGET/release/liveweb.1.gz"
"$TARGET/release/liveweb" completions bash > "$TARGET/release/liveweb.bash"
cargo deb --no-build --quiet
ls -t "$TARGET"/debian/liveweb_*.deb | head -1
