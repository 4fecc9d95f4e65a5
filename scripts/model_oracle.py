"""Agreement of imported models with the libraries that trained them and with onnxruntime.

For each model type: train on a data set shipped inside scikit-learn (iris, wine,
breast_cancer, diabetes) or generated here, export to ONNX (skl2onnx, onnxmltools), import with
`import-model` into a temporary directory, predict the same rows with `model-predict`, the
training library and onnxruntime, and compare:

- classification: the predicted class must be identical on every row; max |delta probability|
  must be <= 1e-5;
- regression: max relative delta, |ours - theirs| / max(|theirs|, 1), must be <= 1e-5.

Rows (>= 10,000 per model): a third near training rows, a third uniform inside the training
range, a third uniform in a box twice as wide (outside the training range); all cast to float32,
as the libraries do before predicting. Models that handle missing values (HistGradientBoosting,
XGBoost, LightGBM) also get rows with NaN.

Run through scripts/model_oracle.sh. Prints a table; exit status 1 if any model disagrees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

warnings.filterwarnings("ignore")

TOLERANCE = 1e-5


@dataclass
class Case:
    name: str
    library: str
    make: Callable[[], object]
    data: str
    nan: bool = False
    zipmap: bool = False
    opset5: bool = False


def load(name: str, seed: int):
    from sklearn import datasets

    if name == "iris":
        return datasets.load_iris(return_X_y=True)
    if name == "wine":
        return datasets.load_wine(return_X_y=True)
    if name == "breast_cancer":
        return datasets.load_breast_cancer(return_X_y=True)
    if name == "diabetes":
        return datasets.load_diabetes(return_X_y=True)
    if name == "generated_multiclass":
        return datasets.make_classification(
            n_samples=2000, n_features=12, n_informative=8, n_classes=4, random_state=seed
        )
    if name == "generated_regression":
        return datasets.make_regression(n_samples=2000, n_features=10, noise=5.0, random_state=seed)
    raise ValueError(name)


def cases(seed: int) -> list[Case]:
    from sklearn import ensemble, tree
    import lightgbm
    import xgboost

    e = ensemble
    return [
        Case("DecisionTreeClassifier", "sklearn", lambda: tree.DecisionTreeClassifier(max_depth=6, random_state=seed), "wine"),
        Case("RandomForestClassifier", "sklearn", lambda: e.RandomForestClassifier(n_estimators=51, max_depth=8, random_state=seed), "iris", zipmap=True),
        Case("RandomForestClassifier (binary)", "sklearn", lambda: e.RandomForestClassifier(n_estimators=51, max_depth=8, random_state=seed), "breast_cancer"),
        Case("ExtraTreesClassifier", "sklearn", lambda: e.ExtraTreesClassifier(n_estimators=51, max_depth=8, random_state=seed), "wine"),
        Case("GradientBoostingClassifier (binary)", "sklearn", lambda: e.GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=seed), "breast_cancer"),
        Case("GradientBoostingClassifier (multiclass)", "sklearn", lambda: e.GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=seed), "wine"),
        Case("HistGradientBoostingClassifier", "sklearn", lambda: e.HistGradientBoostingClassifier(max_iter=60, random_state=seed), "breast_cancer", nan=True),
        Case("HistGradientBoostingClassifier (multiclass)", "sklearn", lambda: e.HistGradientBoostingClassifier(max_iter=40, random_state=seed), "generated_multiclass", nan=True),
        Case("RandomForestRegressor", "sklearn", lambda: e.RandomForestRegressor(n_estimators=50, max_depth=10, random_state=seed), "diabetes"),
        Case("GradientBoostingRegressor", "sklearn", lambda: e.GradientBoostingRegressor(n_estimators=80, max_depth=3, random_state=seed), "diabetes"),
        Case("HistGradientBoostingRegressor", "sklearn", lambda: e.HistGradientBoostingRegressor(max_iter=60, random_state=seed), "generated_regression", nan=True),
        Case("XGBClassifier (binary)", "xgboost", lambda: xgboost.XGBClassifier(n_estimators=60, max_depth=4, random_state=seed), "breast_cancer", nan=True),
        Case("XGBClassifier (multiclass)", "xgboost", lambda: xgboost.XGBClassifier(n_estimators=40, max_depth=4, random_state=seed), "wine", nan=True),
        Case("XGBRegressor", "xgboost", lambda: xgboost.XGBRegressor(n_estimators=60, max_depth=4, random_state=seed), "diabetes", nan=True),
        Case("LGBMClassifier (binary)", "lightgbm", lambda: lightgbm.LGBMClassifier(n_estimators=60, num_leaves=15, random_state=seed, verbose=-1), "breast_cancer", nan=True),
        Case("LGBMClassifier (multiclass)", "lightgbm", lambda: lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=seed, verbose=-1), "generated_multiclass", nan=True),
        Case("LGBMRegressor", "lightgbm", lambda: lightgbm.LGBMRegressor(n_estimators=60, num_leaves=15, random_state=seed, verbose=-1), "diabetes", nan=True),
        # The same regressor rewritten as the TreeEnsemble operator of ai.onnx.ml opset 5 (no
        # converter writes it yet), its base value as an Add node after it.
        Case("TreeEnsemble (opset 5, from HistGradientBoostingRegressor)", "sklearn", lambda: e.HistGradientBoostingRegressor(max_iter=60, random_state=seed), "diabetes", nan=True, opset5=True),
    ]


def export(model, library: str, X: np.ndarray, zipmap: bool):
    """The fitted model as ONNX (FloatTensorType input, as the converters default to)."""
    if library == "sklearn":
        from skl2onnx import to_onnx

        options = None
        if hasattr(model, "predict_proba"):
            options = {id(model): {"zipmap": zipmap}}
        return to_onnx(model, X[:1].astype(np.float32), options=options, target_opset={"": 17, "ai.onnx.ml": 3})
    from onnxmltools.convert import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, X.shape[1]]))]
    if library == "xgboost":
        return convert_xgboost(model, initial_types=types, target_opset=15)
    return convert_lightgbm(model, initial_types=types, target_opset=15, zipmap=zipmap)


def to_tree_ensemble(model):
    """A single-target TreeEnsembleRegressor graph rewritten with the opset-5 TreeEnsemble op."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    modes = [m.decode() for m in a["nodes_modes"]]
    key = list(zip(a["nodes_treeids"], a["nodes_nodeids"]))
    interior = {k: i for i, k in enumerate(k for k, m in zip(key, modes) if m != "LEAF")}
    leaves = {k: i for i, k in enumerate(k for k, m in zip(key, modes) if m == "LEAF")}
    weight = dict(zip(zip(a["target_treeids"], a["target_nodeids"]), a["target_weights"]))
    code = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}
    nodes = {k: [] for k in ("feat", "split", "mode", "t", "tl", "f", "fl", "miss")}
    missing = a.get("nodes_missing_value_tracks_true", [0] * len(modes))
    for i, (k, m) in enumerate(zip(key, modes)):
        if m == "LEAF":
            continue
        tree = k[0]
        t, f = (tree, a["nodes_truenodeids"][i]), (tree, a["nodes_falsenodeids"][i])
        nodes["feat"].append(a["nodes_featureids"][i])
        nodes["split"].append(a["nodes_values"][i])
        nodes["mode"].append(code[m])
        nodes["t"].append(leaves[t] if t in leaves else interior[t])
        nodes["tl"].append(int(t in leaves))
        nodes["f"].append(leaves[f] if f in leaves else interior[f])
        nodes["fl"].append(int(f in leaves))
        nodes["miss"].append(missing[i])
    roots = [interior[(tree, 0)] for tree in sorted({k[0] for k in key})]
    leaf_weights = [weight[k] for k in leaves]
    ensemble = helper.make_node(
        "TreeEnsemble", [node.input[0]], ["raw"], domain="ai.onnx.ml",
        n_targets=1, aggregate_function=1, post_transform=0, tree_roots=roots,
        nodes_featureids=nodes["feat"], nodes_truenodeids=nodes["t"], nodes_trueleafs=nodes["tl"],
        nodes_falsenodeids=nodes["f"], nodes_falseleafs=nodes["fl"],
        nodes_missing_value_tracks_true=nodes["miss"],
        nodes_splits=numpy_helper.from_array(np.array(nodes["split"], dtype=np.float32)),
        nodes_modes=numpy_helper.from_array(np.array(nodes["mode"], dtype=np.uint8)),
        leaf_targetids=[0] * len(leaf_weights),
        leaf_weights=numpy_helper.from_array(np.array(leaf_weights, dtype=np.float32)),
    )
    base = numpy_helper.from_array(np.array(a.get("base_values", [0.0]), dtype=np.float32), "base")
    add = helper.make_node("Add", ["raw", "base"], [model.graph.output[0].name])
    graph = helper.make_graph([ensemble, add], "tree_ensemble", list(model.graph.input), list(model.graph.output), [base])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)], producer_name="model_oracle")


def probe_rows(X: np.ndarray, n: int, nan: bool, rng: np.random.Generator) -> np.ndarray:
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    third = n // 3
    near = X[rng.integers(0, len(X), third)] + rng.normal(0, 0.02, (third, X.shape[1])) * span
    inside = lo + rng.random((third, X.shape[1])) * span
    outside = (lo - span / 2) + rng.random((n - 2 * third, X.shape[1])) * span * 2
    rows = np.vstack([near, inside, outside]).astype(np.float32)
    if nan:
        mask = rng.random(rows.shape) < 0.05
        mask[: n // 2] = False  # half the rows complete, half with about 5% missing values
        rows[mask] = np.nan
    return rows


def run_ours(tools: dict, onnx_path: str, rows: np.ndarray, workdir: str, reference: str | None):
    out_dir = os.path.join(workdir, "artifacts")
    os.makedirs(out_dir, exist_ok=True)
    cmd = [tools["import"], "--onnx", onnx_path, "--out-dir", out_dir, "--imported-at", "2026-01-01T00:00:00Z"]
    if reference:
        cmd += ["--features", reference]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    csv_path = os.path.join(workdir, "rows.csv")
    with open(csv_path, "w") as f:
        for row in rows.astype(np.float64):
            f.write(",".join(repr(float(v)) for v in row) + "\n")
    with open(csv_path) as stdin:
        result = subprocess.run(
            [tools["predict"], "--artifact", os.path.join(out_dir, "model.bin"), "--manifest", os.path.join(out_dir, "manifest.json")],
            stdin=stdin, check=True, capture_output=True, text=True,
        )
    lines = [line.split(",") for line in result.stdout.splitlines()]
    manifest = json.load(open(os.path.join(out_dir, "manifest.json")))
    return lines, manifest, os.path.getsize(os.path.join(out_dir, "model.bin"))


def run_ort(onnx_bytes: bytes, rows: np.ndarray):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: rows})


def compare(case: Case, seed: int, n_rows: int, tools: dict, workdir: str) -> dict:
    rng = np.random.default_rng(seed)
    X, y = load(case.data, seed)
    X = X.astype(np.float32)
    model = case.make()
    started = time.perf_counter()
    model.fit(X, y)
    onnx_model = export(model, case.library, X, case.zipmap)
    if case.opset5:
        onnx_model = to_tree_ensemble(onnx_model)
    onnx_bytes = onnx_model.SerializeToString()
    onnx_path = os.path.join(workdir, "model.onnx")
    with open(onnx_path, "wb") as f:
        f.write(onnx_bytes)
    reference = os.path.join(workdir, "reference.csv")
    with open(reference, "w") as f:
        f.write(",".join(f"x{i}" for i in range(X.shape[1])) + "\n")
        for row in X.astype(np.float64):
            f.write(",".join(repr(float(v)) for v in row) + "\n")

    rows = probe_rows(X, n_rows, case.nan, rng)
    ours, manifest, size = run_ours(tools, onnx_path, rows, workdir, reference)
    ort_out = run_ort(onnx_bytes, rows)
    result = {
        "model": case.name,
        "library": case.library,
        "data": case.data,
        "rows": len(rows),
        "nan_rows": int(np.isnan(rows).any(axis=1).sum()),
        "trees": manifest["algorithm"],
        "artifact_bytes": size,
        "op": manifest["source"]["op"],
    }
    if manifest["task"] == "classification":
        classes = list(model.classes_)
        lib_class = np.array([classes.index(c) for c in model.predict(rows)])
        lib_proba = model.predict_proba(rows)
        our_class = np.array([int(line[0]) for line in ours])
        our_proba = np.array([[float(v) for v in line[1:]] for line in ours])
        ort_label = np.asarray(ort_out[0]).reshape(-1)
        ort_proba = ort_out[1]
        if isinstance(ort_proba, list):  # ZipMap: a list of {label: probability}
            ort_proba = np.array([[d[c] for c in sorted(d)] for d in ort_proba])
        ort_proba = np.asarray(ort_proba, dtype=np.float64)
        ort_class = np.array([classes.index(type(classes[0])(c)) for c in ort_label])
        labels_match = [str(c) for c in classes] == manifest["labels"]
        result.update(
            task="classification",
            labels_match=labels_match,
            class_mismatch_library=int((our_class != lib_class).sum()),
            class_mismatch_ort=int((our_class != ort_class).sum()),
            max_dp_library=float(np.abs(our_proba - lib_proba).max()),
            max_dp_ort=float(np.abs(our_proba - ort_proba).max()),
        )
        ok = (
            labels_match
            and result["class_mismatch_library"] == 0
            and result["class_mismatch_ort"] == 0
            and result["max_dp_library"] <= TOLERANCE
            and result["max_dp_ort"] <= TOLERANCE
        )
    else:
        lib_value = np.asarray(model.predict(rows), dtype=np.float64).reshape(-1)
        our_value = np.array([float(line[0]) for line in ours])
        ort_value = np.asarray(ort_out[0], dtype=np.float64).reshape(-1)

        def rel(a, b):
            return float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max())

        result.update(task="regression", max_rel_library=rel(our_value, lib_value), max_rel_ort=rel(our_value, ort_value))
        ok = result["max_rel_library"] <= TOLERANCE and result["max_rel_ort"] <= TOLERANCE
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["ok"] = bool(ok)
    return result


def table(results: list[dict]) -> str:
    head = f"| model | data | rows (NaN) | class ≠ lib / ort | max Δp lib | max Δp ort | max rel Δ lib | max rel Δ ort | ok |"
    lines = [head, "|" + "---|" * 9]
    for r in results:
        if r.get("error"):
            lines.append(f"| {r['model']} | {r.get('data', '')} | | | | | | | FAIL: {r['error']} |")
            continue
        if r["task"] == "classification":
            cells = [f"{r['class_mismatch_library']} / {r['class_mismatch_ort']}", f"{r['max_dp_library']:.1e}", f"{r['max_dp_ort']:.1e}", "", ""]
        else:
            cells = ["", "", "", f"{r['max_rel_library']:.1e}", f"{r['max_rel_ort']:.1e}"]
        lines.append(
            f"| {r['model']} | {r['data']} | {r['rows']} ({r['nan_rows']}) | " + " | ".join(cells) + f" | {'yes' if r['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--import-model", required=True)
    parser.add_argument("--model-predict", required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--only", help="run only models whose name contains this")
    args = parser.parse_args()
    tools = {"import": args.import_model, "predict": args.model_predict}
    import lightgbm, onnx, onnxruntime, skl2onnx, onnxmltools, sklearn, xgboost

    print(
        "versions: "
        + ", ".join(f"{m.__name__} {m.__version__}" for m in (sklearn, skl2onnx, onnxmltools, onnx, onnxruntime, xgboost, lightgbm))
    )
    results = []
    for case in cases(args.seed):
        if args.only and args.only not in case.name:
            continue
        with tempfile.TemporaryDirectory(prefix="model-oracle-") as workdir:
            try:
                results.append(compare(case, args.seed, args.rows, tools, workdir))
            except subprocess.CalledProcessError as err:
                results.append({"model": case.name, "data": case.data, "ok": False, "error": (err.stderr or str(err)).strip()})
            except Exception as err:  # report every model, then fail
                results.append({"model": case.name, "data": case.data, "ok": False, "error": f"{type(err).__name__}: {err}"})
        print(f"  {case.name}: {'ok' if results[-1]['ok'] else 'FAILED'}", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    failed = [r["model"] for r in results if not r["ok"]]
    if failed:
        print(f"model_oracle: {len(failed)} model(s) disagree: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"model_oracle: {len(results)} models agree within {TOLERANCE} on every row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
