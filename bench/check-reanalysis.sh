#!/usr/bin/env bash
# Re-analyses a committed run (default: the newest bench/results/<date>/) in a scratch copy and compares what it
# writes with what is committed: RESULTS.md and every gnuplot data file must come out byte for byte. Run it after
# changing a summary or a shared part of bench/weirbench/; a difference is either intended (say so in the commit)
# or a mistake. Needs gnuplot (bench/run.sh installs it). Measures nothing and changes nothing in the tree.
#
#   bench/check-reanalysis.sh [bench/results/DATE]
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-$(ls -d bench/results/*/ | grep -v -- '-quick/$' | sort | tail -n 1)}
run=${run%/}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
copy="$scratch/$(basename "$run")"  # the same directory name: RESULTS.md names it
cp -r "$run" "$copy"
rm -rf "$copy/tmp"
/usr/bin/python3 bench/bench.py --reanalyse "$copy" --no-update >/dev/null
status=0
for f in "$run"/RESULTS.md "$run"/*.dat; do
    if ! cmp -s "$f" "$copy/$(basename "$f")"; then
        echo "differs: $f" >&2
        diff -u "$f" "$copy/$(basename "$f")" | head -n 40 >&2 || true
        status=1
    fi
done
[ "$status" -eq 0 ] && echo "re-analysis of $run: RESULTS.md and $(ls "$run"/*.dat | wc -l) data files identical"
exit "$status"
