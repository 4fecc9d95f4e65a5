"""Inference speed next to onnxruntime's, on the same models and rows (scripts/model_bench.sh).

prepare DIR   trains a 300-tree depth-8 XGBoost classifier and a 100-tree scikit-learn random
              forest on 30 generated features, exports both to ONNX, imports them with
              import-model into DIR/gbm/ and DIR/rf/ (model.bin + manifest.json: model
              directories for MODEL_ARTIFACTS_DIR), and writes DIR/gbm.bin, DIR/rf.bin (copies
              of the artifacts), DIR/*.onnx, DIR/rows.f64 (1,000 probe rows, float32 values as
              little-endian f64) and DIR/gbm-predict.json (a POST /predict body: the first row).
ort DIR       times onnxruntime on the same rows: one row per run() and 100 rows per run(), with
              intra_op_num_threads=1 and with the default thread pool; also the fixed cost of a
              run() call from Python (an Identity graph) and the session creation time.
report DIR    combines DIR/ort.json with the criterion estimates under DIR/criterion into one JSON
              document on stdout.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")
N_FEATURES = 30


def prepare(directory: str, import_model: str) -> None:
    import xgboost
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    os.makedirs(directory, exist_ok=True)
    X, y = make_classification(n_samples=20_000, n_features=N_FEATURES, n_informative=20, random_state=0)
    X = X.astype(np.float32)
    gbm = xgboost.XGBClassifier(n_estimators=300, max_depth=8, learning_rate=0.1, n_jobs=2, random_state=0).fit(X, y)
    rf = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0).fit(X, y)
    onnx_models = {
        "gbm": convert_xgboost(gbm, initial_types=[("input", FloatTensorType([None, N_FEATURES]))], target_opset=15),
        "rf": to_onnx(rf, X[:1], options={id(rf): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3}),
    }
    # A fixed import date and graph name (onnxmltools names the graph with a random uuid, and
    # the manifest records the ONNX file's sha256): the same libraries then give byte-identical
    # model directories, and a build that embeds one (bench.sh's) has nothing to redo.
    env = dict(os.environ, SOURCE_DATE_EPOCH="0")
    for name, model in onnx_models.items():
        model.graph.name = name
        path = os.path.join(directory, f"{name}.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        staging = os.path.join(directory, f"{name}.import")
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        subprocess.run([import_model, "--onnx", path, "--out-dir", staging], check=True, capture_output=True, env=env)
        out = os.path.join(directory, name)
        os.makedirs(out, exist_ok=True)
        for file in ("model.bin", "manifest.json"):
            target = os.path.join(out, file)
            if not (os.path.exists(target) and filecmp.cmp(os.path.join(staging, file), target, shallow=False)):
                os.replace(os.path.join(staging, file), target)
        shutil.rmtree(staging)
        shutil.copyfile(os.path.join(out, "model.bin"), os.path.join(directory, f"{name}.bin"))
    rng = np.random.default_rng(1)
    rows = X[rng.integers(0, len(X), 1000)]
    rows.astype(np.float64).tofile(os.path.join(directory, "rows.f64"))
    rows.tofile(os.path.join(directory, "rows.f32"))
    with open(os.path.join(directory, "gbm-predict.json"), "w") as f:
        json.dump({"data": [float(v) for v in rows[0]]}, f)


def timed(call, repeat: int, blocks: int = 7) -> float:
    """Median over `blocks` of the mean time of `call()` in nanoseconds."""
    for _ in range(max(10, repeat // 10)):
        call()
    results = []
    for _ in range(blocks):
        start = time.perf_counter_ns()
        for _ in range(repeat):
            call()
        results.append((time.perf_counter_ns() - start) / repeat)
    return statistics.median(results)


def ort_times(directory: str) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rows = np.fromfile(os.path.join(directory, "rows.f32"), dtype=np.float32).reshape(-1, N_FEATURES)
    results = {"onnxruntime_version": ort.__version__}

    identity = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "identity",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, N_FEATURES])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, N_FEATURES])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    ).SerializeToString()

    for threads_name, threads in (("threads_1", 1), ("threads_default", 0)):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(identity, options, providers=["CPUExecutionProvider"])
        one = rows[:1]
        results.setdefault("call_overhead_ns", {})[threads_name] = timed(lambda: session.run(None, {"x": one}), 2000)

    for name in ("gbm", "rf"):
        onnx_bytes = open(os.path.join(directory, f"{name}.onnx"), "rb").read()
        model_result = {"onnx_bytes": len(onnx_bytes)}
        for threads_name, threads in (("threads_1", 1), ("threads_default", 0)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            start = time.perf_counter_ns()
            session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
            create_ns = time.perf_counter_ns() - start
            input_name = session.get_inputs()[0].name
            i = [0]

            def single():
                i[0] = (i[0] + 1) % len(rows)
                session.run(None, {input_name: rows[i[0] : i[0] + 1]})

            j = [0]

            def batch():
                j[0] = (j[0] + 100) % (len(rows) - 99)
                session.run(None, {input_name: rows[j[0] : j[0] + 100]})

            model_result[threads_name] = {
                "session_create_ms": create_ns / 1e6,
                "row_ns": timed(single, 1000),
                "batch_100_per_row_ns": timed(batch, 100) / 100,
            }
        results[name] = model_result
    with open(os.path.join(directory, "ort.json"), "w") as f:
        json.dump(results, f, indent=2)


def estimate(directory: str, bench: str) -> float:
    path = os.path.join(directory, "criterion", "ensemble", bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def report(directory: str) -> None:
    ort_results = json.load(open(os.path.join(directory, "ort.json")))
    out = {
        "what": "per-row inference: this project's runtime (criterion median) next to onnxruntime "
        "(median of timed blocks, called from Python: its figures include the Python call cost, "
        "given separately as call_overhead_ns)",
        "onnxruntime_version": ort_results["onnxruntime_version"],
        "onnxruntime_call_overhead_ns": ort_results["call_overhead_ns"],
        "models": {},
    }
    shapes = {"gbm": "XGBClassifier, 300 trees, max_depth 8, 30 features", "rf": "RandomForestClassifier, 100 trees, 30 features"}
    for name in ("gbm", "rf"):
        ours_row = estimate(directory, f"row_{name}")
        ours_batch = estimate(directory, f"batch_100_{name}") / 100
        decode = estimate(directory, f"decode_{name}")
        o = ort_results[name]
        out["models"][name] = {
            "model": shapes[name],
            "artifact_bytes": os.path.getsize(os.path.join(directory, f"{name}.bin")),
            "onnx_bytes": o["onnx_bytes"],
            "ours": {"decode_us": decode / 1e3, "row_ns": ours_row, "batch_100_per_row_ns": ours_batch},
            "onnxruntime": {k: o[k] for k in ("threads_1", "threads_default")},
            "speedup_vs_onnxruntime_threads_1": {
                "row": o["threads_1"]["row_ns"] / ours_row,
                "batch_100_per_row": o["threads_1"]["batch_100_per_row_ns"] / ours_batch,
            },
            "speedup_vs_onnxruntime_threads_default": {
                "row": o["threads_default"]["row_ns"] / ours_row,
                "batch_100_per_row": o["threads_default"]["batch_100_per_row_ns"] / ours_batch,
            },
        }
    json.dump(out, sys.stdout, indent=2)
    print()


def main() -> int:
    command, directory = sys.argv[1], sys.argv[2]
    if command == "prepare":
        prepare(directory, sys.argv[3])
    elif command == "ort":
        ort_times(directory)
    elif command == "report":
        report(directory)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
