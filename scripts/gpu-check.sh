#!/usr/bin/env bash
# The GPU path in one command, for the first machine with a CUDA GPU (under 10 minutes on one GPU):
# train a small model in bf16, sample it and its base with vLLM on the GPU, judge the pairs with PairRM on the GPU
# (a random PairRM-shaped checkpoint built here: the point is the device path, not the verdicts) and with an LLM judge
# served on loopback, print the board, and write versions and timings to OUT/gpu-check.json.
#
#   scripts/gpu-check.sh [OUT]          OUT defaults to gpu-check; re-running resumes from OUT/store.duckdb
#   GPU_CHECK_DRY=1 scripts/gpu-check.sh   prints the plan and runs nothing (works anywhere)
#   GPU_CHECK_MODEL=tiny-llama ...         the model to train (default smollm2-135m, tiny-llama when that does not
#                                          resolve offline)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
STORE="$OUT/store.duckdb"
MODEL=${GPU_CHECK_MODEL:-smollm2-135m}
RUN=gpu-dpo
STEPS=20
COMMON=(--store "$STORE")
# Two engines are started one after the other in one process; 0.4 of the GPU each leaves room should the first one's
# memory not yet be returned when the second starts.
GEN=(--backend vllm --dtype bfloat16 --gpu-memory-utilization 0.4 --prompts synthetic --limit 32 --n 1
     --temperature 0.8 --max-new-tokens 64 --no-progress)

plan() {
  cat <<EOF
gpu-check plan (output in $OUT):
  1. train:    evalharness train --loss dpo --model $MODEL --dtype bfloat16 --max-steps $STEPS --batch-size 8 --name $RUN
  2. generate: evalharness generate -c $RUN -c $MODEL ${GEN[*]}
  3. pairrm:   a random PairRM-shaped checkpoint in $OUT/pairrm, then evalharness judge --judge pairrm:device=cuda,...
  4. llm:      a loopback OpenAI-compatible judge on 127.0.0.1, then evalharness judge --judge llm:model=loopback ...
  5. board:    evalharness leaderboard (each judge)
  versions (torch, vllm, transformers, GPU) and per-step seconds -> $OUT/gpu-check.json
EOF
}

if [ "${GPU_CHECK_DRY:-0}" = 1 ]; then
  plan
  exit 0
fi

# One line and exit 2 when this machine cannot run the check, before anything is written.
"$PY" - <<'PY' || exit 2
import importlib.util, sys
try:
    import torch
except ImportError:
    sys.exit("error: gpu-check needs torch, which is not installed")
if not torch.cuda.is_available():
    sys.exit("error: gpu-check needs a CUDA GPU and torch sees none (torch.cuda.is_available() is False)")
if importlib.util.find_spec("vllm") is None:
    sys.exit("error: gpu-check needs vLLM on the GPU: pip install 'evalharness[vllm]'")
PY

plan
mkdir -p "$OUT"
if [ -z "${GPU_CHECK_MODEL:-}" ] && ! "$PY" -c "from evalharness.models import resolve_model; resolve_model('$MODEL')" \
    >/dev/null 2>&1; then
  MODEL=tiny-llama
  echo "smollm2-135m does not resolve offline here; training tiny-llama instead"
fi
TIMES="$OUT/timings.tsv"
: > "$TIMES"
step() {  # step NAME CMD...: runs CMD, appends "NAME<TAB>seconds" to the timings
  local name=$1 start end
  shift
  echo "== $name: $*"
  start=$(date +%s%N)
  "$@"
  end=$(date +%s%N)
  printf '%s\t%s\n' "$name" "$(( (end - start) / 1000000 ))" >> "$TIMES"  # milliseconds
}
EH=("$PY" -m evalharness)

step train "${EH[@]}" train --loss dpo --model "$MODEL" --dtype bfloat16 --max-steps $STEPS --batch-size 8 \
  --lr 5e-6 --max-length 96 --max-prompt-length 48 --set data.limit=200 --name $RUN --out "$OUT/runs/$RUN" \
  --no-progress "${COMMON[@]}"
step generate "${EH[@]}" generate -c $RUN -c "$MODEL" "${GEN[@]}" "${COMMON[@]}"
[ -d "$OUT/pairrm" ] || "$PY" -c "from judges.pairrm_testing import build_random_pairrm; build_random_pairrm('$OUT/pairrm', seed=0)"
step pairrm "${EH[@]}" judge --judge "pairrm:path=$OUT/pairrm,device=cuda" --models "$RUN" --baseline "$MODEL" \
  --temperature 0.8 --no-leaderboard --no-progress "${COMMON[@]}"

rm -f "$OUT/loopback.url"
# The loopback judge prefers the longer answer: a real HTTP endpoint, so the async client path runs as it would.
"$PY" - "$OUT/loopback.url" <<'PY' &
import sys, time
sys.path.insert(0, "tests/judges")
from loopback import Loopback, mt_bench_judge, prefer_longer
server = Loopback(behaviour=mt_bench_judge(prefer_longer)).start()
open(sys.argv[1], "w").write(server.url)
while True:
    time.sleep(60)
PY
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$OUT/loopback.url" ] && break; sleep 0.2; done
export OPENAI_API_KEY=loopback  # the loopback server reads no key; the client wants one
step llm "${EH[@]}" judge --judge llm:model=loopback --base-url "$(cat "$OUT/loopback.url")" \
  --models "$RUN" --baseline "$MODEL" --temperature 0.8 --no-leaderboard --no-progress "${COMMON[@]}"

"$PY" - "$STORE" > "$OUT/judges.txt" <<'PY'
import sys
import duckdb
with duckdb.connect(sys.argv[1], read_only=True) as con:
    for (judge,) in con.execute("SELECT DISTINCT judge || '@' || judge_version FROM judgments ORDER BY 1").fetchall():
        print(judge)
PY
while read -r judge; do
  step "board-${judge%%:*}" "${EH[@]}" leaderboard --judge "$judge" --baseline "$MODEL" "${COMMON[@]}"
done < "$OUT/judges.txt"

"$PY" - "$OUT" <<'PY'
import json, sys
from importlib.metadata import version
import torch
out = sys.argv[1]
steps = dict(line.rstrip("\n").split("\t") for line in open(f"{out}/timings.tsv") if line.strip())
record = {
    "gpu": torch.cuda.get_device_name(0),
    "cuda": torch.version.cuda,
    "versions": {name: version(name) for name in ("torch", "vllm", "transformers", "evalharness")},
    "seconds": {name: int(ms) / 1000 for name, ms in steps.items()},
}
json.dump(record, open(f"{out}/gpu-check.json", "w"), indent=2)
print(json.dumps(record, indent=2))
PY
