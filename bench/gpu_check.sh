#!/usr/bin/env bash
# One short end-to-end check on a CUDA machine (not part of `make test`; CI has no GPU):
# phantom -> segkit run (3d_fullres, 2 folds, AMP) -> export -> predict on CUDA and on CPU -> compare.
# Expects wheels of the packages the GPU image lacks in .whl/ (SimpleITK, cc3d, batchgenerators & deps).
set -euo pipefail
source "$(dirname "$0")/_gpu_env.sh"
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
S="python3 -m toolkit.cli"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -c "from toolkit.phantom import make_phantom_dataset; make_phantom_dataset('/tmp/raw', n_train=10, n_test=2, extent_mm=(48, 56, 56))"
DS=/tmp/raw/Dataset900_Phantom
/usr/bin/time -v $S run $DS --work /tmp/gw -c 3d_fullres -f 0 -f 1 --epochs 4 --iters-per-epoch 50 --device cuda -j 8 \
  2> >(grep -v -E "it/s|case/s|s/case|s/it|Command being|Maximum resident" >&2) | tee "$OUT/run.txt"
python3 - <<'PY'
import torch
c = torch.load("/tmp/gw/Dataset900_Phantom/models/3d_fullres/fold_0/checkpoint_final.pt", weights_only=True, map_location="cpu")
print("grad scaler state saved:", c["grad_scaler_state"] is not None, "| losses:", [round(x, 3) for x in c["logs"]["train_loss"]])
PY
$S export $DS --work /tmp/gw -o /tmp/bundle
for dev in cuda cpu; do
  start=$(date +%s.%N)
  $S predict -m /tmp/bundle -i $DS/imagesTs -o /tmp/pred_$dev --device $dev 2>/dev/null
  echo "predict on $dev: $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s for 2 cases"
done
python3 - <<'PY'
import numpy as np
from toolkit.io.images import read_image
for case in ("phantom_010", "phantom_011"):
    a, ga = read_image(f"/tmp/pred_cuda/{case}.nii.gz"); b, gb = read_image(f"/tmp/pred_cpu/{case}.nii.gz")
    ref, gr = read_image(f"/tmp/raw/Dataset900_Phantom/imagesTs/{case}_0000.nii.gz")
    print(case, "cuda vs cpu label agreement", round(float((a == b).mean()), 5), "| geometry equal:", ga == gr == gb)
PY
$S evaluate /tmp/pred_cuda $DS/labelsTs --dataset-json $DS/dataset.json | tee "$OUT/eval.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_inference_sliding_window.py -k "cuda or gpu" 2>&1 | tail -3
