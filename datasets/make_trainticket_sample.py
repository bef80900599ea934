"""Copy the logs and pod metrics of the bundled TrainTicket sample's minutes from the full shared dataset.

    python datasets/make_trainticket_sample.py [FULL_DATASET_DIR]

The sample (``datasets/trainticket``) holds the spans of ``normal/11_39`` and ``faulty/11_51``-``12_01``.
This adds ``logs/`` (the log files of those same minutes, unchanged) and ``metrics/`` (every pod's
gauges and the frontend's, cut to 11:29-12:11 UTC), so the sample is multimodal like the full set.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "trainticket"
FULL = (
    Path(sys.argv[1])
    if len(sys.argv) > 1
    else HERE.parents[1].parent / "shared" / "datasets" / "trainticket-nezha-2023-01-30"
)
START_NS, END_NS = 1675078140 * 10**9, 1675080660 * 10**9  # 2023-01-30 11:29:00 and 12:11:00 UTC


def copy_logs() -> None:
    for sub in ("faulty", "normal"):
        (HERE / "logs" / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((HERE / sub).glob("*.otlp.jsonl.gz")):
            shutil.copyfile(FULL / "logs" / sub / f.name, HERE / "logs" / sub / f.name)


def cut_metrics() -> None:
    (HERE / "metrics").mkdir(exist_ok=True)
    for name in ("pods.otlp.jsonl.gz", "frontend.otlp.jsonl.gz"):
        out = []
        with gzip.open(FULL / "metrics" / name, "rt", encoding="utf-8") as fh:
            for line in fh:
                req = json.loads(line)
                for rm in req["resourceMetrics"]:
                    for sm in rm["scopeMetrics"]:
                        for m in sm["metrics"]:
                            pts = m["gauge"]["dataPoints"]
                            m["gauge"]["dataPoints"] = [
                                p for p in pts if START_NS <= int(p["timeUnixNano"]) < END_NS
                            ]
                        sm["metrics"] = [m for m in sm["metrics"] if m["gauge"]["dataPoints"]]
                if any(sm["metrics"] for rm in req["resourceMetrics"] for sm in rm["scopeMetrics"]):
                    out.append(json.dumps(req, separators=(",", ":")))
        with gzip.GzipFile(HERE / "metrics" / name, "wb", mtime=0) as fh:
            fh.write(("\n".join(out) + "\n").encode())


if __name__ == "__main__":
    copy_logs()
    cut_metrics()
