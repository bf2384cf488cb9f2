#!/usr/bin/env bash
# Merges CDX files (from several nodes' sealed/ directories, or named one by one) into one
# index sorted bytewise, as pywb and OpenWayback read it:
#   cluster/merge-cdx.sh OUT.cdx DIR|FILE.cdx...
# Each liveweb CDX is already sorted with its header first (the header starts with a space,
# which sorts before every key), so a merge of sorted files (`sort -m`) is enough, and `-u`
# leaves one header (two capture lines are never equal: each names its file and offset).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT.cdx DIR|FILE.cdx..." >&2; exit 2; }
out=$1
shift
files=()
for arg in "$@"; do
  if [ -d "$arg" ]; then
    shopt -s nullglob
    files+=("$arg"/*.cdx)
    shopt -u nullglob
  elif [ -f "$arg" ]; then
    files+=("$arg")
  else
    echo "$0: $arg is neither a directory nor a file" >&2
    exit 1
  fi
done
[ ${#files[@]} -gt 0 ] || { echo "$0: no .cdx files in $*" >&2; exit 1; }
tmp="$out.tmp.$$"
LC_ALL=C sort -m -u "${files[@]}" > "$tmp"
mv "$tmp" "$out"
echo "$out: $(($(wc -l < "$out") - 1)) lines from ${#files[@]} CDX files"
