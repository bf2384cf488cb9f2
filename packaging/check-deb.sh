#!/usr/bin/env bash
# CI's packaging check: builds the .deb, checks what it holds, and (as root, with dpkg)
# installs it, runs the installed binary, checks the user and directories its postinst
# makes, and purges it again.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(packaging/build-deb.sh | tail -1)
echo "deb: $deb ($(du -h "$deb" | cut -f1))"
listing=$(dpkg-deb -c "$deb" 2>/dev/null || python3 - "$deb" <<'PY'
import sys, tarfile, io
data = open(sys.argv[1], "rb").read()
# an ar archive: find the data.tar member
at = 8
while at < len(data):
    name = data[at:at+16].decode().strip()
    size = int(data[at+48:at+58].decode().strip())
    body = data[at+60:at+60+size]
    if name.startswith("data.tar"):
        for m in tarfile.open(fileobj=io.BytesIO(body)).getmembers():
            print(m.name)
    at += 60 + size + (size % 2)
PY
)
for path in usr/bin/liveweb lib/systemd/system/liveweb.service etc/default/liveweb \
    usr/share/man/man1/liveweb.1.gz usr/share/bash-completion/completions/liveweb \
    usr/share/doc/liveweb/README.md usr/share/doc/liveweb/docs/operating.md; do
  grep -q "$path" <<< "$listing" || { echo "deb: $path missing from $deb" >&2; echo "$listing" >&2; exit 1; }
done
echo "deb: contents ok"
if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null 2>&1 && command -v adduser >/dev/null 2>&1; then
  dpkg -i "$deb" > /dev/null
  /usr/bin/liveweb --version
  id liveweb > /dev/null
  [ "$(stat -c %U /var/lib/liveweb)" = liveweb ] || { echo "deb: /var/lib/liveweb not owned by liveweb" >&2; exit 1; }
  grep -q '^#LIVEWEB_LISTEN=' /etc/default/liveweb
  dpkg --purge liveweb > /dev/null
  echo "deb: installed, ran and purged"
else
  echo "deb: not installed here (needs root, dpkg and adduser)"
fi
