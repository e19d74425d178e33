#!/usr/bin/env bash
# The GPU paths, measured in one run on a CUDA machine that has PyTorch but not this project's other packages:
# those come as wheels in .whl/ (bench/gpu_wheels.sh makes them). What it prints goes to $OUT/log.txt (default
# ./gpu_out), with the pipeline logs beside it.
#
#   bash bench/gpu_wheels.sh                 # where pip reaches the package index
#   bash bench/gpu_measure.sh                # on the GPU machine, in a copy of the repository with .whl/
#
# 1. the CUDA-only test; 2. training throughput of the default model, fp32 vs bf16, batch 8 and 32, one process
# and four at once on the one GPU; 3. a round's pseudo-labelling at Cityscapes scale (PL_IMAGES images); 4. the
# pipeline (every stage on the GPU, rounds shortened to R0_ITERATIONS and ROUND_ITERATIONS) twice at the same
# time in two clones: wall time, stage logs, and whether the two clones' outputs are identical (a seeded rerun
# on the same GPU); 5. a DVC experiment queue run with two workers (what `dars ablation run --jobs` uses). The repository is copied to a scratch git repository first; the working
# tree is left as it is.
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
DEVICE=${DARS_DEVICE:-cuda}  # cpu: the same steps on the CPU, to try the script where there is no GPU
R0_ITERATIONS=${R0_ITERATIONS:-600}
ROUND_ITERATIONS=${ROUND_ITERATIONS:-300}
SCRATCH=${SCRATCH:-/tmp/dars_gpu}
STEPS=${STEPS:-40} WARMUP=${WARMUP:-10}  # training steps per throughput figure: timed, and before those
PL_IMAGES=${PL_IMAGES:-200}  # Cityscapes-size images of the pseudo-labelling benchmark
PARTS=${PARTS:-1 2 3 4 5}  # which of the numbered parts below to run
part() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 DARS_DEVICE=$DEVICE DVC_NO_ANALYTICS=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost
stamp() { echo "=== $(date +%T) $*"; }
timed() { local label=$1 start=$SECONDS; shift; "$@"; local rc=$?; echo "$label: $((SECONDS - start)) s wall, rc $rc"; }

stamp environment
command -v nvidia-smi >/dev/null && nvidia-smi -L
nproc; python3 --version; git --version
if ! python3 -c "import dvc, zarr" 2>/dev/null && [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:$PATH"
fi
# `dars` as dvc.yaml calls it, without installing the project (python -m puts the working directory first).
if ! command -v dars >/dev/null; then
  mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m stages.cli "$@"\n' >/tmp/bin/dars && chmod +x /tmp/bin/dars
  export PATH="/tmp/bin:$PATH"
fi
python3 -c "import torch, zarr, dvc, dvclive; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'zarr', zarr.__version__, 'dvc', dvc.__version__)" || exit 1

if part 1; then
stamp "1. CUDA tests"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/pseudo_label/test_pseudo_label.py tests/test_device.py -k gpu
fi

if part 2; then
stamp "2. training throughput"
for batch in 8 32; do
  timeout 90 python3 -m bench.bench_models --device "$DEVICE" --archs lraspp_mobilenet_v3_large --batch "$batch" \
    --crop 128 --warmup "$WARMUP" --steps "$STEPS"
done
stamp "2b. four processes at once, batch 8 (each prints its own img/s)"
pids=()  # waited for by name: a bare `wait` would also wait for the tee above, which never ends
for i in 1 2 3 4; do
  timeout 120 python3 -m bench.bench_models --device "$DEVICE" --archs lraspp_mobilenet_v3_large --batch 8 \
    --crop 128 --warmup "$WARMUP" --steps "$((STEPS * 3 / 2))" >"/tmp/concurrent_$i.txt" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
tail -qn1 /tmp/concurrent_*.txt
fi

if part 3; then
stamp "3. a round's pseudo labels at Cityscapes scale, the confidence pass's softmax on the $DEVICE"
timeout 120 python3 bench/bench_pseudo_label.py --scale cityscapes --images "$PL_IMAGES" --device "$DEVICE" --workers 8
fi

if part 4; then
stamp "4. the pipeline, two clones at once"
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH" || exit 1
# The tree as it is (no .git on a machine that received a copy of it); the clones below get what git tracks.
tar --exclude=./.git --exclude=./.venv --exclude=./.whl --exclude=./.dvc/tmp --exclude=./.dvc/cache \
    --exclude="./$(basename "$OUT")" -cf - . | tar -xf - -C "$SCRATCH" || exit 1
(cd "$SCRATCH" && git init -q && git add -A && git commit -qm snapshot) || exit 1
pids=()
for copy in a b; do
  rm -rf "$SCRATCH-$copy" && git clone -q "$SCRATCH" "$SCRATCH-$copy" || exit 1
  rm -rf "$SCRATCH-$copy"/outputs/r?  # the committed results, so that only this run's are compared below
  (cd "$SCRATCH-$copy" && timed "$copy" timeout 240 python3 -m dvc exp run -S "train.iterations=$R0_ITERATIONS" \
     -S "rounds.r1.iterations=$ROUND_ITERATIONS" -S "rounds.r2.iterations=$ROUND_ITERATIONS" \
     >"$OUT/pipeline_$copy.txt" 2>&1) &
  pids+=($!)
done
wait "${pids[@]}"
grep -hE 'wall|it/s|Running stage|rror' "$OUT/pipeline_a.txt" | head -80
tail -n 2 "$OUT/pipeline_b.txt"
for f in outputs/r{0,1,2}/{evaluation.json,model.pt} outputs/r{1,2}/pseudo_label_stats.json; do
  if [ ! -f "$SCRATCH-a/$f" ] || [ ! -f "$SCRATCH-b/$f" ]; then echo "missing: $f"
  elif cmp -s "$SCRATCH-a/$f" "$SCRATCH-b/$f"; then echo "identical: $f"; else echo "DIFFERENT: $f"; fi
done
for r in r0 r1 r2; do cp "$SCRATCH-a/outputs/$r/evaluation.json" "$OUT/${r}_evaluation.json" 2>/dev/null; done
fi

if part 5; then
stamp "5. experiment queue, two workers"
cd "$SCRATCH-a" || exit 1
for it in 100 150; do
  python3 -m dvc exp run --queue -n "q$it" -S "train.iterations=$it" evaluate_r0 || exit 1
done
timed queue timeout 100 python3 -m dvc exp run --run-all -j 2
python3 -m dvc queue stop --kill >/dev/null 2>&1  # workers left by a timeout
python3 -m dvc exp show --csv --no-fetch 2>/dev/null | cut -d, -f1-8 | head -6
fi
stamp done
