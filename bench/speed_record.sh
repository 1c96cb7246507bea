#!/usr/bin/env bash
# Issues 23 and 24's GPU records, in two device calls of under 10 minutes each on one H100/H200, written under OUT:
#
#     bash bench/speed_record.sh OUT packs       # the packed sweep on both shapes (issue 24; the small one
#                                                # profiled), the 7B pack with native masks, one solo 0.5B run
#     UNSLOTH_SITE=DIR bash bench/speed_record.sh OUT record
#                                                # issue 23's one-call record: 4 x 2,048, the defaults (profiled) and
#                                                # eager, baseline, CUDA graphs, the memory points
#                                                # with Unsloth's setups beside them
#                                                # (TOTAL_S=N: the call's limit, default 600; fewer setups fit)
#     bash bench/speed_record.sh OUT reads       # where the eager step's host waits come from (~2 minutes)
#     SHAPE=tiny bash bench/speed_record.sh OUT PART   # CPU smoke of the same commands (minutes, numbers meaningless)
#
# 1. bench/qlora_throughput.py: setups as named (Unsloth's run in its own package folder, UNSLOTH_SITE: built by
#    bench/unsloth_site.sh; without it they are left out and the log says so);
# 2. bench/packed_sweep.py: the 4-job packed sweep against the same jobs one after another, both shapes.
# Each step has its own time limit so that one slow step cannot take the others' time; each writes its JSON as
# it goes. What each number means: the scripts' docstrings and bench/RESULTS.md.
#
# Everything is written under RAW_DIR (default OUT/raw) and, after every step, packed again into OUT/record.tgz: a
# device call brings back only a few files (call 13 lost its profiles to that limit), so there set RAW_DIR outside
# OUT (e.g. /tmp/raw); a step cut off by the call's limit still leaves the earlier steps' files in the archive.
set -u
DEST=${1:?usage: bench/speed_record.sh OUT packs|record|reads}
PART=${2:?usage: bench/speed_record.sh OUT packs|record|reads}
OUT=${RAW_DIR:-$DEST/raw}
mkdir -p "$DEST"
SHAPE=${SHAPE:-mistral7b}
WORK=${WORK:-/tmp/medchat-bench}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
U23=""; U6=""  # Unsloth's ~20 and ~6 GiB points (its 12 GiB one left out: time)
if [ -n "${UNSLOTH_SITE:-}" ] && [ "$SHAPE" != tiny ]; then
    U23=",unsloth_packed"; U6=",unsloth_padded_offload"
else
    echo "Unsloth's setups left out (UNSLOTH_SITE unset or CPU smoke)"
fi
if [ "$SHAPE" = tiny ]; then
    STEPS="--steps 2 --warmup 1"; SMALL=tiny; PROFILE=""  # the profiler's CUDA activity: GPU only
    RECORD=baseline,medchat,medchat_compile_fixed,medchat_budget6
else
    STEPS="--steps 6 --warmup 3"; SMALL=qwen2_0_5b; PROFILE="--profile medchat"
    # most wanted first (a step's deadline skips the setups that would start after it): the defaults (compiled
    # under auto, profiled) and eager; 4 x 2,048 as auto plans it (on an H100: compiled, 2 rows x 2) and eager;
    # each memory point beside Unsloth's (23 GiB: compiled 2 rows x 2 under auto since 2026-12-07); the baseline;
    # then the eager 23 GiB plan, 4 x 2,048 compiled unsplit and CUDA graphs, as time allows
    RECORD=medchat,medchat_nonblocking_copies,medchat_eager,medchat_4x2048,medchat_4x2048_eager,medchat_budget23$U23,medchat_budget6$U6
    RECORD=$RECORD,baseline,medchat_budget23_eager,medchat_4x2048_compile_fixed,medchat_compile_fixed_cudagraphs_d0
fi
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, output in OUT/NAME.log, say how it ended
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    tar czf "$DEST/record.tgz" -C "$OUT" .
}
throughput() {  # throughput NAME LIMIT_S SETUPS [more args]
    local name=$1 limit=$2 setups=$3; shift 3
    step "$name" "$limit" python bench/qlora_throughput.py --shape "$SHAPE" --work "$WORK" --setups "$setups" $STEPS \
        --deadline $((limit - 45)) --out "$OUT/$name.json" "$@"
    grep -A 14 "process(es)" "$OUT/$name.log"
}
packed() {  # packed NAME LIMIT_S SHAPE [more args]
    local name=$1 limit=$2 shape=$3; shift 3
    step "$name" "$limit" python bench/packed_sweep.py --shape "$shape" --work "$WORK" $STEPS --out "$OUT/packed_$shape.json" "$@"
    tail -1 "$OUT/$name.log"
}
nvidia-smi -L 2>/dev/null || echo "no GPU: CPU smoke"
step prepare 90 python bench/qlora_throughput.py --prepare-only --shape "$SHAPE" --work "$WORK"
if [ "$PART" = packs ] && [ "$SMALL" != "$SHAPE" ]; then  # call 12: building it inside the packed step's limit ran it out
    step prepare_small 60 python bench/qlora_throughput.py --prepare-only --shape "$SMALL" --work "$WORK"
fi
case "$PART" in
packs)
    # the 7B pack unprofiled (call 13: its profile took 60 s and the sequential side ran out of the step's limit);
    # since call 14 each sequential 7B job compiles its layers under auto (about 25 s a job): a longer limit
    packed packed_big 240 "$SHAPE"
    [ "$SMALL" != "$SHAPE" ] && packed packed_small 130 "$SMALL" --profile "$OUT/profile_packed_$SMALL"
    # the 7B pack's masks drawn and applied in one pass each (call 13: 29% of its kernel time was the masks' passes)
    step packed_big_native 100 python bench/packed_sweep.py --shape "$SHAPE" --work "$WORK" $STEPS --sides packed \
        --masks native --out "$OUT/packed_${SHAPE}_native.json"
    # call 13's sequential 0.5B steps ran 2.8x slower than call 10's, unexplained: one solo run profiled (GPU idle
    # share, the host operators that wait for the GPU)
    [ "$SMALL" != "$SHAPE" ] && step solo_small 80 python bench/qlora_throughput.py --shape "$SMALL" --work "$WORK" \
        --setups medchat $STEPS --profile medchat --deadline 50 --out "$OUT/solo_small/solo_$SMALL.json"
    ;;
record)
    # TOTAL_S: the device call's own limit, all of it for the throughput step (the compiled path's equivalence
    # was measured at dropout 0 in call 13 and at 0.05 in call 14: bench/equivalence.py --setups compile_fixed_d05)
    LEFT=$(( ${TOTAL_S:-600} - SECONDS - 15 )); [ "$LEFT" -gt 540 ] && LEFT=540
    throughput throughput "$LEFT" "$RECORD" $PROFILE ${UNSLOTH_SITE:+--unsloth-site "$UNSLOTH_SITE"} --unsloth-timeout 100
    ;;
reads)
    # where the 7B step makes the host wait (call 14: ~685 syncs a step, sites unknown), by line of code: first
    # torch's own sync-debug warnings over the compiled defaults (GPU only), then the operator spy over the eager
    # step (sdpa: flex_attention cannot run under the spy, bench/host_reads.py's docstring)
    [ "$SHAPE" != tiny ] && step host_syncs 150 python bench/host_reads.py --mode sync --shape "$SHAPE" \
        --work "$WORK" --setup medchat --out "$OUT/host_syncs.md" && cat "$OUT/host_syncs.md"
    step host_reads 120 python bench/host_reads.py --shape "$SHAPE" --work "$WORK" --setup medchat_eager \
        --out "$OUT/host_reads.md" model.attn_implementation=sdpa $([ "$SHAPE" = tiny ] && echo trainer.fused_lora=true)
    cat "$OUT/host_reads.md"
    # then, as time allows (TOTAL_S), the compiled setups call 14 left out: 4 x 2,048 and the 23 GiB split
    LEFT=$(( ${TOTAL_S:-600} - SECONDS - 15 )); [ "$LEFT" -gt 540 ] && LEFT=540
    [ "$SHAPE" != tiny ] && [ "$LEFT" -gt 100 ] && throughput throughput "$LEFT" \
        medchat_4x2048_compile_fixed,medchat_budget23_split_compile${U23}
    ;;
*) echo "unknown part $PART: packs, record or reads"; exit 2 ;;
esac
