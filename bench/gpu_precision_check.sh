#!/usr/bin/env bash
# Short CUDA check of the precision policy (not part of `make test`; CI has no GPU):
# the CUDA-only tests, then one tiny training per precision on CUDA (auto = fp16 + GradScaler, fp32 = neither).
set -euo pipefail
GPU_EXTRA_PATH=$PWD/tests source "$(dirname "$0")/_gpu_env.sh"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"
python3 -m pytest -q -p no:cacheprovider tests/test_precision.py tests/test_inference_sliding_window.py 2>&1 | tail -3
python3 - <<'PY'
import tempfile, time, torch
from pathlib import Path
from training_helpers import make_work
from toolkit.training.options import TrainerOptions
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import FINAL, LOG, Trainer
from toolkit.inference.sliding_window import sliding_window_predict
for precision in ("auto", "fp32", "mixed"):
    root, work = make_work(Path(tempfile.mkdtemp()))
    opts = TrainerOptions(epochs=2, iters_per_epoch=20, val_iters=2, num_workers=0, device="cuda", seed=0,
                          final_validation=False, precision=precision)
    t0 = time.time()
    trainer = Trainer(resolve_training(root, work, "3d_fullres", 0), opts)
    fold = trainer.run()
    ck = torch.load(fold / FINAL, weights_only=True)
    print(precision, "->", trainer.precision, "| scaler saved:", ck["grad_scaler_state"] is not None,
          "| losses", [round(x, 3) for x in ck["logs"]["train_loss"]], f"| {time.time() - t0:.1f} s")
    net = trainer.network.eval(); net.deep_supervision = False
    data = torch.randn(1, 40, 40, 40)
    a = sliding_window_predict(net, data, (16, 16, 16), 3, precision="auto")
    b = sliding_window_predict(net, data, (16, 16, 16), 3, precision="fp32")
    print("  predict auto vs fp32 on CUDA: max |dp|", float((a - b).abs().max()), "argmax agree",
          float((a.argmax(0) == b.argmax(0)).float().mean()))
PY
