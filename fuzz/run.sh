#!/usr/bin/env bash
# Runs one fuzz target for a while (default 600 s) on one core:
#   fuzz/run.sh <target> [seconds]
# New inputs go to corpus-new/<target> (git-ignored) next to the committed
# corpus/<target>; seeds/<target> and dict/<target>.dict are used when present.
# The libFuzzer log is left in logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh <target> [seconds]}
seconds=${2:-600}
mkdir -p "corpus/$target" "corpus-new/$target" logs
dirs=("corpus-new/$target" "corpus/$target")
[[ -d "seeds/$target" ]] && dirs+=("seeds/$target")
args=(-max_total_time="$seconds" -jobs=1 -workers=1 -print_final_stats=1)
[[ -f "dict/$target.dict" ]] && args+=(-dict="dict/$target.dict")
status=0
cargo +nightly fuzz run "$target" "${dirs[@]}" -- "${args[@]}" || status=$?
# With -jobs, libFuzzer writes its output to fuzz-<job>.log.
[[ -f fuzz-0.log ]] && mv fuzz-0.log "logs/$target.log"
exit "$status"
