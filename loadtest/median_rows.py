"""Reads peers.sh rows (header first; target, case, req/s, ..., round) from stdin and prints,
for each (target, case) in first-seen order, the row of its median round by req/s (the lower
median for an even count), so a table of several rounds keeps one real row per case."""
import sys

lines = sys.stdin.read().splitlines()
print(lines[0])
groups = {}
for line in lines[1:]:
    fields = line.split()
    if len(fields) < 3:
        continue
    groups.setdefault((fields[0], fields[1]), []).append(line)
for rows in groups.values():
    def rps(line):
        try:
            return float(line.split()[2])
        except ValueError:
            return 0.0
    rows.sort(key=rps)
    print(rows[(len(rows) - 1) // 2])
