"""The loss curve of a training run as a PNG (for the README): `metrics.json` of lora_adapter -> OUT.

python benchmarks/plot_loss.py .fastapply/corpus-artifacts/adapters/lora_adapter/metrics.json docs/training-loss.png
"""

import json
import sys
from pathlib import Path

from fastapply_pipeline.core.plots import loss_chart


def main() -> int:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    metrics = json.loads(Path(sys.argv[1]).read_text())
    title = f"LoRA of {Path(metrics.get('base_model', 'the base')).name}: loss by step"
    Path(sys.argv[2]).write_bytes(loss_chart([tuple(x) for x in metrics["loss_curve"]], title))
    print(f"wrote {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
