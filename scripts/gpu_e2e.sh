#!/usr/bin/env bash
# The README's user path on one GPU, each step's exit status, wall time and key figure in a Markdown record.
#
#   bash scripts/gpu_e2e.sh OUT_DIR [STEP ...]      # all steps, or only the named ones (plus what they need)
#
# Writes OUT_DIR/gpu_e2e.md (the record: docs/gpu_e2e.md is one such run) and OUT_DIR/gpu_e2e_failures.txt (the
# last lines of each failed step's log). Work files go to $E2E_WORK (default /tmp/medchat-e2e).
# Needs: a CUDA GPU, medchat's dependencies (on the lent GPU machine: ../shared/device/wheelhouse.sh's tarball
# with evaluate.py's metric packages), MCQ benchmark files in $MCQ_DIR (the format of shared/data/mcq_eval).
# W&B is not installed there: every step runs with tracker=none. Steps:
#   plan          python -m medchat.plan, for the tiny default and for a 7B-shaped local model
#   train_tiny    python train.py (the offline default, on the GPU: fused LoRA, flex packing, Liger as planned)
#   train_7b      a Mistral-7B-shaped local model (random weights, model.name_or_path=DIR) on a local file in
#                 ChatDoctor's {instruction, input, output} format (made from the shipped MedQuAD sample)
#   eval          evaluate.py compare_base=true (BLEU, ROUGE: the BERTScore encoder and WordNet are not there)
#   mcq           evaluate.py task=mcq on $MCQ_DIR, 25 items per benchmark
#   chat          python -m medchat.chat merge=true and merge=false
#   chat_after_eval   static-cache generation (evaluate.py's) then chat's streaming in one process
#   export        python -m medchat.export merge=true, then evaluate.py artifact=RUN/export/merged
#   dpo           python -m medchat.make_pairs, then train.py stage=dpo on the pairs
#   sweep         a two-job sweep, launcher.parallel=2 on the one GPU, then python -m medchat.report
#   quant         quant=int8 and quant=none trainings of the default
#   resume        fused LoRA at lora_dropout=0.05: a run crashed at step 15 and resumed vs the uninterrupted one
set -uo pipefail
OUT=${1:?usage: scripts/gpu_e2e.sh OUT_DIR [STEP ...]}
shift
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
W=${E2E_WORK:-/tmp/medchat-e2e}
MCQ_DIR=${MCQ_DIR:-../shared/data/mcq_eval}
PY=${PYTHON:-python}
SMOKE=(${E2E_SMOKE:-})  # extra train.py overrides for a quick CPU check of this script (never in the record's run)
mkdir -p "$W/logs"
REC=$OUT/gpu_e2e.md
FAILS=$OUT/gpu_e2e_failures.txt
: > "$FAILS"
STEPS=${*:-plan train_tiny train_7b eval mcq chat chat_after_eval export dpo sweep quant resume}
wants() { [[ " $STEPS " == *" $1 "* ]]; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled

json() {  # json FILE EXPR: a Python expression over the file's JSON as `m`
  "$PY" - "$1" "$2" <<'EOF' 2>/dev/null || echo "(no $1)"
import json, sys
m = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))
EOF
}

cmp_adapters() {  # cmp_adapters DIR_A DIR_B: the largest difference between two adapters' tensors
  "$PY" - "$1" "$2" <<'EOF' 2>&1
import sys
from safetensors.torch import load_file
a, b = (load_file(f"{d}/adapter_model.safetensors") for d in sys.argv[1:3])
assert a.keys() == b.keys(), "different tensors"
diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
print(f"{len(a)} tensors; max |whole - resumed| = {diff:.3g}" + (" (bit-identical)" if diff == 0 else ""))
EOF
}

step() {  # step NAME FIGURE_COMMAND -- COMMAND...
  local name=$1 figure=$2
  shift 3
  local log="$W/logs/$name.log" t0 t1 rc fig
  echo "== $name: $*" | tee -a "$OUT/gpu_e2e_commands.txt"
  t0=$(date +%s.%N)
  "$@" > "$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  fig=$(eval "$figure" 2>&1 | tail -1 | tr '|' '/')
  printf '| %s | `%s` | %s | %s s | %s |\n' "$name" "$(echo "$*" | sed "s#$W#W#g; s#|#/#g")" "$rc" \
    "$(awk "BEGIN {printf \"%.0f\", $t1 - $t0}")" "$fig" >> "$REC"
  if [ $rc -ne 0 ]; then
    { echo "===== $name (exit $rc): last lines of $log"; tail -40 "$log"; } >> "$FAILS"
  fi
  echo "   exit $rc, $fig"
  return $rc
}

{
  echo "# medchat on one GPU: the README's user path ($(date -u +%Y-%m-%d))"
  echo
  echo "Made by \`bash scripts/gpu_e2e.sh OUT\` (main at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ', with uncommitted changes'))."
  "$PY" - <<'EOF'
import importlib.metadata as md, sys, torch
v = {n: md.version(n) for n in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "liger-kernel")
     if __import__("importlib").util.find_spec(n.replace("-", "_")) is not None}
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"Device: {gpu}; Python {sys.version.split()[0]}; " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".")
EOF
  echo "W&B is not installed on that machine: every step runs with tracker=none. W stands for the work folder."
  echo
  echo "| step | command | exit | wall | key figure |"
  echo "|---|---|---:|---:|---|"
} > "$REC"

TINY=$W/tiny
M7=$W/mistral7b-bf16
if wants train_7b || wants plan; then
  if [ ! -f "$M7/config.json" ]; then
    "$PY" bench/qlora_throughput.py --prepare-only --work "$W" > "$W/logs/prepare_7b.log" 2>&1 \
      || { echo "prepare_7b failed"; tail -20 "$W/logs/prepare_7b.log" >> "$FAILS"; }
  fi
  "$PY" - "$W/chatdoctor.json" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open("src/medchat/sample_data/medquad.jsonl")]
out = [{"instruction": "If you are a doctor, please answer the medical questions based on the patient's description.",
        "input": r["question"], "output": r["answer"]} for r in rows]
json.dump(out, open(sys.argv[1], "w"))
EOF
fi

if wants plan; then
  step plan_tiny "grep -m1 'run plan' $W/logs/plan_tiny.log | cut -c1-300" -- "$PY" -m medchat.plan
  step plan_7b "grep -m1 'run plan' $W/logs/plan_7b.log | cut -c1-300" -- \
    "$PY" -m medchat.plan model=mistral7b lora=r32 "model.name_or_path=$M7" model.chat_template=null
fi
if wants train_tiny || wants eval || wants mcq || wants chat || wants export || wants dpo; then
  [ -f "$TINY/adapter/adapter_config.json" ] || step train_tiny \
    "json $TINY/metrics.json '\"held-out loss %.4f -> %.4f; %s tokens/s; fused projections %s; peak %.2f GiB\" % (m[\"eval_loss_before\"], m[\"eval_loss_after\"], round(m.get(\"train_tokens_per_second\") or 0), m[\"speed\"].get(\"fused_lora_projections\"), m.get(\"peak_memory_gib\") or 0)'" \
    -- "$PY" train.py tracker=none "${SMOKE[@]}" "hydra.run.dir=$TINY"
fi
if wants train_7b; then
  step train_7b \
    "json $W/m7/metrics.json '\"held-out loss %.4f -> %.4f; %s tokens/s; peak %.1f GiB; %s steps\" % (m[\"eval_loss_before\"], m[\"eval_loss_after\"], round(m.get(\"train_tokens_per_second\") or 0), m.get(\"peak_memory_gib\") or 0, m.get(\"global_step\"))'" \
    -- "$PY" train.py model=mistral7b lora=r32 "model.name_or_path=$M7" model.chat_template=null dataset=chatdoctor \
    "dataset.path=$W/chatdoctor.json" trainer.max_steps=20 trainer.eval_steps=10 tracker=none "hydra.run.dir=$W/m7"
fi
if wants eval; then
  step eval_compare_base "cat $TINY/eval/*/summary.md 2>/dev/null | grep -i -m3 'rouge\|bleu' | tr '\n' ' ' | cut -c1-300" -- \
    "$PY" evaluate.py "run_dir=$TINY" compare_base=true "metrics.names=[bleu,rouge]" generation.max_new_tokens=64
fi
if wants mcq; then
  step mcq "grep -h -i -m4 'acc' $TINY/eval/*mcq*/summary.md $TINY/eval/mcq*/summary.md 2>/dev/null | tr '\n' ' ' | cut -c1-300" -- \
    "$PY" evaluate.py "run_dir=$TINY" task=mcq limit=25 "mcq.benchmarks=[$MCQ_DIR]"
fi
if wants chat; then
  step chat_merged "head -c 120 $W/logs/chat_merged.out | tr '\n' ' '" -- \
    bash -c "$PY -m medchat.chat run_dir=$TINY prompt='What are the symptoms of diabetes?' max_new_tokens=48 merge=true > $W/logs/chat_merged.out"
  step chat_unmerged "head -c 120 $W/logs/chat_unmerged.out | tr '\n' ' '" -- \
    bash -c "$PY -m medchat.chat run_dir=$TINY prompt='What are the symptoms of diabetes?' max_new_tokens=48 merge=false > $W/logs/chat_unmerged.out"
fi
if wants chat_after_eval; then
  step chat_after_eval "grep -E '^\| (merged|chat)' $W/logs/chat_after_eval.log | awk -F'|' '{print \$2\":\"\$7}' | tr '\n' ';'" -- \
    "$PY" scripts/bench_generation.py --model mistral7b-random --num-layers 2 --setups merged,merged-auto,chat-merged \
    --prompts 8 --batch-sizes 8 --unbatched-prompts 2 --max-new-tokens 16
fi
if wants export; then
  step export "ls $TINY/export/merged 2>/dev/null | tr '\n' ' '" -- "$PY" -m medchat.export "run_dir=$TINY" merge=true
  step eval_artifact "cat $TINY/eval/*export*/summary.md 2>/dev/null | grep -i -m2 'rouge\|perplex' | tr '\n' ' ' | cut -c1-300" -- \
    "$PY" evaluate.py "run_dir=$TINY" "artifact=$TINY/export/merged" "metrics.names=[bleu,rouge]" generation.max_new_tokens=64
fi
if wants dpo; then
  step make_pairs "wc -l < $W/pairs.jsonl" -- "$PY" -m medchat.make_pairs "run_dir=$TINY" "out=$W/pairs.jsonl" \
    max_new_tokens=64 train_limit=128
  step dpo "json $W/dpo/metrics.json '\"held-out reward accuracy %s -> %s, margin %s -> %s\" % (m.get(\"reward_accuracy_before\"), m.get(\"reward_accuracy_after\"), m.get(\"reward_margin_before\"), m.get(\"reward_margin_after\"))'" -- \
    "$PY" train.py stage=dpo "stage.init_from=$TINY" dataset=preference "dataset.path=$W/pairs.jsonl" \
    trainer.max_steps=16 tracker=none "hydra.run.dir=$W/dpo"
fi
if wants sweep; then
  step sweep "ls -d $W/sweep/*/adapter 2>/dev/null | wc -l | sed 's/$/ adapters/'" -- \
    "$PY" train.py -m lora.r=4,8 trainer.max_steps=20 launcher.parallel=2 tracker=none "hydra.sweep.dir=$W/sweep"
  step report "ls $W/sweep/report 2>/dev/null | tr '\n' ' '" -- "$PY" -m medchat.report "$W/sweep"
fi
if wants quant; then
  for q in int8 none; do
    step "quant_$q" \
      "json $W/quant_$q/metrics.json '\"held-out loss %.4f -> %.4f; fused projections %s\" % (m[\"eval_loss_before\"], m[\"eval_loss_after\"], m[\"speed\"].get(\"fused_lora_projections\"))'" \
      -- "$PY" train.py "quant=$q" tracker=none "${SMOKE[@]}" "hydra.run.dir=$W/quant_$q"
  done
fi
if wants resume; then
  R=(trainer.max_steps=30 trainer.save_steps=15 trainer.eval_strategy=no lora.lora_dropout=0.05 tracker=none)
  step resume_whole "json $W/whole/metrics.json '\"fused projections %s\" % m[\"speed\"].get(\"fused_lora_projections\")'" -- \
    "$PY" train.py "${R[@]}" "hydra.run.dir=$W/whole"
  step resume_crash "grep -c 'simulated crash' $W/logs/resume_crash.log" -- \
    "$PY" train.py "${R[@]}" trainer.fail_at_step=15 "hydra.run.dir=$W/broken"
  step resume_auto "cmp_adapters $W/whole/adapter $W/broken/adapter" -- \
    "$PY" train.py "${R[@]}" "hydra.run.dir=$W/broken"
fi
echo >> "$REC"
n_fail=$(awk -F'|' 'NR>8 && $4+0 != 0' "$REC" | wc -l)
echo "Steps failed: $n_fail (resume_crash exits non-zero by design: it is the simulated crash)." >> "$REC"
cat "$REC"
