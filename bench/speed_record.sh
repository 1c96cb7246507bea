#!/usr/bin/env bash
# Issues 23 and 24's GPU records in one device call (about 9 minutes on one H100/H200), written under OUT:
#
#     bash bench/speed_record.sh OUT                 # on the GPU machine: Mistral-7B shape, Qwen2-0.5B for packing
#     SHAPE=tiny bash bench/speed_record.sh OUT      # CPU smoke of the same commands (minutes, numbers meaningless)
#
# 1. bench/qlora_throughput.py: the notebook baseline, the eager defaults, the compiled defaults (their profile),
#    4 x 2,048 eager and compiled, and the memory-budget points (6 and 23 GiB: Unsloth's; Unsloth's own setups need
#    its package folder, --unsloth-site, not carried here);
# 2. bench/equivalence.py: the compiled path against the plain reference, with the floor of exact reorderings;
# 3. bench/packed_sweep.py: the 4-job packed sweep against the same jobs one after another, both shapes.
# Each step has its own time limit so that one slow step cannot take the others' time; each writes its JSON as
# it goes. What each number means: the scripts' docstrings and bench/RESULTS.md.
set -u
OUT=${1:?usage: bench/speed_record.sh OUT}
SHAPE=${SHAPE:-mistral7b}
WORK=${WORK:-/tmp/medchat-bench}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if [ "$SHAPE" = tiny ]; then
    STEPS="--steps 2 --warmup 1"; EQ_SHAPE=tiny; SMALL=tiny; PROFILE=""  # the profiler's CUDA activity: GPU only
    SETUPS=baseline,medchat,medchat_compile_fixed
else
    STEPS="--steps 6 --warmup 3"; EQ_SHAPE=mistral7b; SMALL=qwen2_0_5b; PROFILE="--profile medchat_compile_fixed"
    SETUPS=baseline,medchat,medchat_compile_fixed,medchat_4x2048,medchat_4x2048_compile_fixed,medchat_budget6,medchat_budget23
fi
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, output in OUT/NAME.log, say how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - t0)) s"
}
nvidia-smi -L 2>/dev/null || echo "no GPU: CPU smoke"
step prepare 90 python bench/qlora_throughput.py --prepare-only --shape "$SHAPE" --work "$WORK"
step throughput 220 python bench/qlora_throughput.py --shape "$SHAPE" --work "$WORK" --setups "$SETUPS" $STEPS \
    $PROFILE --deadline 190 --out "$OUT/throughput.json"
grep -A 12 "process(es)" "$OUT/throughput.log"
step equivalence 140 python bench/equivalence.py --shape "$EQ_SHAPE" --work "$WORK" --steps 10 --packed-levers \
    --ref-micro-rows 2 --setups packed_sdpa,micro_batch_half,compile_fixed,compile_fixed_d05 --budget-seconds 120 \
    --no-preference --out "$OUT/equivalence.json"
grep "^| \(ref\|packed_sdpa\|micro\|compile\)" "$OUT/equivalence.log"
step packed_big 85 python bench/packed_sweep.py --shape "$SHAPE" --work "$WORK" $STEPS --out "$OUT/packed_$SHAPE.json"
tail -1 "$OUT/packed_big.log"
if [ "$SMALL" != "$SHAPE" ]; then
    step packed_small 55 python bench/packed_sweep.py --shape "$SMALL" --work "$WORK" $STEPS --out "$OUT/packed_$SMALL.json"
    tail -1 "$OUT/packed_small.log"
fi
