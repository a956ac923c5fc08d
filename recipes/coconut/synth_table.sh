#!/usr/bin/env bash
# The synthetic FSC-6 table of recipes/coconut/README.md: every strategy, memories of 1% and 2%, class orders
# (stream.seed) 0 1 2, and COCONUT's ablation (strategy.nspt=0, strategy.mm=0) at 1%; JOBS streams at a time, one
# thread each. Streams already finished (metrics.json) are skipped, unfinished ones resume, ones another runner is
# training (a lock in their folder) are left to it; SKIP="name ..." leaves out streams by name (e.g. ones finished
# in another folder).
#   bash recipes/coconut/synth_table.sh [JOBS] [OUT]      # then: mmseq continual compare OUT/*
set -euo pipefail
JOBS=${1:-2}
OUT=${2:-runs/coconut/synth}
CONFIG=recipes/coconut/configs/synth_fsc6.yaml
{
  # the order puts the comparisons first (a partial table is then the most useful part of the whole)
  one() { echo "${1}_1pc_s$2 strategy.name=$1 memory.fraction=0.01 stream.seed=$2"; }
  echo "finetune_s0 strategy.name=finetune stream.seed=0"
  one er 0; one coconut 0; one coconut_seq_kd 0
  one er 1; one coconut 1; one er 2; one coconut 2
  echo "offline_s0 strategy.name=offline stream.seed=0"
  one coconut_seq_kd 1; one coconut_seq_kd 2
  for a in nspt mm; do
    echo "coconut_no_${a}_1pc_s0 strategy.name=coconut strategy.$a=0 memory.fraction=0.01 stream.seed=0"
  done
  one audio_kd 0; one seq_kd 0
  for seed in 0 1 2; do
    for s in er coconut coconut_seq_kd; do
      echo "${s}_2pc_s$seed strategy.name=$s memory.fraction=0.02 stream.seed=$seed"
    done
  done
  for seed in 1 2; do
    echo "finetune_s$seed strategy.name=finetune stream.seed=$seed"
    echo "offline_s$seed strategy.name=offline stream.seed=$seed"
    for s in audio_kd seq_kd; do
      echo "${s}_1pc_s$seed strategy.name=$s memory.fraction=0.01 stream.seed=$seed"
    done
    for a in nspt mm; do
      echo "coconut_no_${a}_1pc_s$seed strategy.name=coconut strategy.$a=0 memory.fraction=0.01 stream.seed=$seed"
    done
  done
  for seed in 0 1 2; do
    for s in audio_kd seq_kd; do
      echo "${s}_2pc_s$seed strategy.name=$s memory.fraction=0.02 stream.seed=$seed"
    done
  done
} | while read -r name args; do
  [ -f "$OUT/$name/metrics.json" ] || [[ " ${SKIP:-} " == *" $name "* ]] || echo "$name $args"
done | xargs -P "$JOBS" -L 1 bash -c 'name=$0; dir='"$OUT"'/$name; mkdir -p $dir;
  [ -f $dir/metrics.json ] && exit 0  # finished by another runner meanwhile
  # one runner per stream: a second runner on the same OUT skips it (the lock goes with the process)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 flock -n -E 75 $dir/.lock /usr/bin/time -f "%e s wall, %U s user" \
    -o $dir/time.txt mmseq continual run '"$CONFIG"' "$@" out_dir=$dir > $dir/log.txt 2>&1
  case $? in 0) echo "done $name";; 75) echo "busy $name (another runner)";; *) echo "FAILED $name";; esac'
