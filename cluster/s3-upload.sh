#!/usr/bin/env bash
# An --on-seal recipe: uploads a sealed ARC/WARC file and its index files (CDX, .private list)
# to S3-compatible object storage with rclone, checks every upload (size and MD5 against the
# local file), then deletes the local copies. Any failure exits non-zero and deletes nothing:
# liveweb runs the hook again later, with backoff, and again after a restart.
#   liveweb --on-seal cluster/s3-upload.sh ...
# Configuration, from the environment liveweb runs in:
#   LIVEWEB_S3_REMOTE   rclone remote and path for the files, e.g. `s3:archive/node1` (required)
#   RCLONE_CONFIG_<NAME>_*  the remote's settings in rclone's environment form, e.g. for a
#                       remote `s3`: RCLONE_CONFIG_S3_TYPE=s3 RCLONE_CONFIG_S3_PROVIDER=Other
#                       RCLONE_CONFIG_S3_ENDPOINT=https://... RCLONE_CONFIG_S3_ACCESS_KEY_ID=...
#                       RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=...; or an rclone.conf (RCLONE_CONFIG)
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 SEALED_FILE" >&2; exit 2; }
file=$1
remote=${LIVEWEB_S3_REMOTE:?set LIVEWEB_S3_REMOTE to an rclone remote:path}
command -v rclone >/dev/null || { echo "$0: rclone is needed (apt-get install rclone)" >&2; exit 1; }
# Gone already: an earlier run uploaded and deleted it (and then failed to report).
[ -e "$file" ] || { echo "$0: $file is gone already"; exit 0; }
[ -f "$file" ] || { echo "$0: $file is not a file" >&2; exit 1; }
dir=$(dirname "$file")
name=$(basename "$file")
stem=${name%.warc.gz}
stem=${stem%.arc.gz}
stem=${stem%.arc}
cdx="$dir/$stem.cdx"
private="$dir/$stem.private"
# rclone 1.60 (Debian 12) fails on a CA bundle given through AWS_CA_BUNDLE; its own flag
# takes it.
rclone_flags=()
if [ -n "${AWS_CA_BUNDLE:-}" ]; then
  rclone_flags=(--ca-cert "$AWS_CA_BUNDLE")
  unset AWS_CA_BUNDLE
fi

# Uploads one file and checks what the store holds: its size and MD5 must be the local file's.
upload() {
  local path=$1 target="$remote/$(basename "$1")"
  # One part up to 5 GiB (S3's largest single upload): the store's ETag is then the MD5 it
  # computed itself, not one rclone wrote as metadata for a multipart upload.
  rclone "${rclone_flags[@]}" copyto --s3-upload-cutoff 5G --retries 3 --low-level-retries 5 \
    "$path" "$target"
  local listing size md5
  listing=$(rclone "${rclone_flags[@]}" lsjson --hash --files-only "$target")
  read -r size md5 < <(python3 -c '
import json, sys
entries = json.loads(sys.stdin.read())
if len(entries) != 1: sys.exit("not exactly one object")
e = entries[0]
print(e["Size"], e.get("Hashes", {}).get("md5", "-"))' <<< "$listing")
  local want_size want_md5
  want_size=$(stat -c %s "$path")
  want_md5=$(md5sum "$path" | cut -d' ' -f1)
  if [ "$size" != "$want_size" ] || [ "$md5" != "$want_md5" ]; then
    echo "$0: $target holds $size bytes, md5 $md5; $path has $want_size bytes, md5 $want_md5" >&2
    return 1
  fi
}

# Index files first, so the archive file is only ever deleted with its index safe.
uploaded=()
for path in "$cdx" "$private" "$file"; do
  [ -f "$path" ] || continue
  upload "$path"
  uploaded+=("$path")
done
# Only what was uploaded and checked is deleted: the CDX first, the private list last.
# Stopped half-way, what is left is an archive file whose CDX recovery rebuilds (its private
# records still listed) and which is handed to this hook again.
for path in "$cdx" "$file" "$private"; do
  for done in "${uploaded[@]}"; do
    if [ "$path" = "$done" ]; then rm -f "$path"; fi
  done
done
echo "$0: ${uploaded[*]} uploaded to $remote, checked, deleted here" || true
