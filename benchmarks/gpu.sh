#!/usr/bin/env bash
# Speed on a CUDA machine, in about 10 minutes:
#   1. benchmarks/speed.py at full scale (the side-by-side ratios, JSON in $OUT/speed.json);
#   2. 100 SimCLR epochs at 224 px on a synthetic set of the write-up's size (1,192 training
#      images of 1024 px), printing seconds per epoch, images/s and GPU utilisation
#      (nvidia-smi sampled every second during training).
#
#   bash benchmarks/gpu.sh                        # CUDA, full scale
#   bash benchmarks/gpu.sh --device cpu --quick   # a dry run of the same steps on a CPU
#
# Options: --device D (default cuda), --quick (speed.py --quick; 24 images, 2 epochs at 128 px),
# --out DIR (default /tmp/simclr-ad-gpu). Run from the repository root after `make` set-up.
set -euo pipefail

DEVICE=cuda
QUICK=0
OUT=/tmp/simclr-ad-gpu
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"

if [[ $QUICK == 1 ]]; then
  SPEED_FLAGS=(--quick); IMAGES=24; EPOCHS=2; SIZE=128; BATCH=8
else
  # 10% of train/good is held out for calibration: 1,325 files give the write-up's 1,192
  SPEED_FLAGS=(); IMAGES=1325; EPOCHS=100; SIZE=224; BATCH=256
fi

echo "== 1. benchmarks/speed.py ${SPEED_FLAGS[*]:-} --device $DEVICE"
"$PY" benchmarks/speed.py "${SPEED_FLAGS[@]}" --device "$DEVICE" --out "$OUT/speed.json" \
  --cache "$OUT/cache"

echo "== 2. $EPOCHS SimCLR epochs at $SIZE px, $IMAGES images of 1024 px (90% trained on)"
# a few distinct 1024 px PNGs, hard-linked up to $IMAGES files (decoding cost per file is the same)
"$PY" - "$OUT/data" "$IMAGES" <<'PYEOF'
import os, sys
from pathlib import Path
from simclr_ad.data.synthetic import generate_dataset
out, count = Path(sys.argv[1]), int(sys.argv[2])
good = out / "fabric" / "train" / "good"
if len(list(good.glob("*.png"))) < count:
    unique = out.parent / "unique"
    generate_dataset(unique, categories=("fabric",), image_size=1024, n_train=16, n_test=0)
    sources = sorted((unique / "fabric" / "train" / "good").glob("*.png"))
    good.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        target = good / f"{i:04d}.png"
        if not target.exists():
            os.link(sources[i % len(sources)], target)
print(f"{count} PNGs in {good}")
PYEOF
SMI_PID=""
if command -v nvidia-smi >/dev/null && [[ $DEVICE == cuda* ]]; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
    > "$OUT/gpu_util.csv" &
  SMI_PID=$!
fi
started=$(date +%s)
"$PY" -m simclr_ad -q train --data "$OUT/data" --out "$OUT/run" --overwrite \
  --epochs "$EPOCHS" --image-size "$SIZE" --batch-size "$BATCH" --weights none \
  --augment seed --device "$DEVICE" --scorers patch --checkpoint-every 1000
finished=$(date +%s)
if [[ -n $SMI_PID ]]; then kill "$SMI_PID"; fi

"$PY" - "$OUT" "$started" "$finished" <<'PYEOF'
import csv, statistics, sys
from pathlib import Path
out, started, finished = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(out / "run" / "train_log.csv")))
seconds = [float(r["seconds"]) for r in rows]
rates = [float(r["images_per_s"]) for r in rows]
print(f"epochs: {len(rows)}; seconds per epoch: median {statistics.median(seconds):.2f}, "
      f"first {seconds[0]:.2f}, total {sum(seconds):.1f}")
print(f"images/s: median {statistics.median(rates):.0f}")
print(f"train command wall time (data decoding, epochs, detector fit, bundle): {finished - started} s")
util_file = out / "gpu_util.csv"
if util_file.exists() and util_file.stat().st_size:
    util = [float(line.split(",")[0]) for line in util_file.read_text().splitlines() if line.strip()]
    print(f"GPU utilisation: median {statistics.median(util):.0f}%, mean "
          f"{statistics.fmean(util):.0f}% over {len(util)} one-second samples")
else:
    print("GPU utilisation: not sampled (no nvidia-smi or not a CUDA device)")
PYEOF
