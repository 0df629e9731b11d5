"""UMAP + GMM read-out of a run folder's features: wall time and NMI / ACC / ARI of a grid of settings.

    python benchmarks/umap_stage.py RUN_DIR [RUN_DIR ...] [--settings a b ...] [--twice a b ...]
                                    [--gmm-n-init 3] [--gmm-grid-on NAME ...] [--gmm-seeds 10]
                                    [--no-warmup] [--seed 0] [--threads 2] [--json OUT]

    # the recommended read-out (reproducible), timed as a fresh process would pay it:
    python benchmarks/umap_stage.py /tmp/dc_mnist --settings h_seed50_pcainit --gmm-n-init 3 --no-warmup

RUN_DIR holds ``features.npy`` (N × D; the CLI with ``export.features_dtype=float32``) and
``assignments.csv`` (its ``label`` column: the true class names), e.g. the folder of
``clusterbench method=deepcluster dataset=mnist ... hydra.run.dir=RUN_DIR``.

Everything runs in one process. numba's JIT compile (umap-learn and pynndescent) is paid once, on a
small random input, before any timed setting, and reported on its own line: it is a one-off per
process (less with a warm on-disk cache, ``NUMBA_CACHE_DIR``), not part of any row. ``--no-warmup``
skips it, so that the first row pays the compile as a fresh process would.

Settings (all UMAP: 10 dims, n_neighbors 20, min_dist 0, cosine; GMM: 10 components, full covariance,
k-means initialisation, n_init 1, reg_covar 1e-6, seeded — the METHODS.md "Measured here" read-out):

- ``a``  as measured: ``random_state=seed`` (umap-learn then forces ``n_jobs=1``: single-threaded
  pynndescent and serial SGD). Reproducible.
- ``b``  ``random_state=None, n_jobs=THREADS``: parallel pynndescent and parallel (Hogwild) SGD;
  not reproducible.
- ``c50`` / ``c32``  randomized PCA to 50 / 32 dims first, then ``b``.
- ``d100`` / ``d200``  ``b`` with ``n_epochs`` 100 / 200 (200 is umap-learn's default above 10k points).
- ``e_lmF``  ``b`` with ``low_memory=False`` (``b`` is umap-learn's default ``low_memory=True``).
- ``f``  exact cosine kNN by faiss (``IndexFlatIP`` on L2-normalised features, THREADS OpenMP
  threads) passed as ``precomputed_knn``; UMAP unseeded and parallel as ``b``.
- ``f_seed``  the same faiss kNN, UMAP seeded (serial SGD): reproducible, parallel kNN.
- ``f100`` / ``f_seed100``  those two with ``n_epochs=100``.
- ``f_pca32``  PCA 32 then the faiss kNN, unseeded UMAP (``f_seed_pca32``, ``f_pca32_100``, ... likewise).
- ``a100``  ``a`` with ``n_epochs=100`` (reproducible); ``d50``  ``b`` with 50 epochs.
- ``h``, ``h100``, ``h50``  approximate cosine kNN by a faiss HNSW graph (M 16, efConstruction 40,
  efSearch 64; no numba, so no pynndescent JIT), unseeded parallel UMAP with 200 / 100 / 50 epochs;
  ``h_seed``, ``h_seed100``, ``h_seed50`` the same with UMAP seeded (serial SGD, reproducible).
- ``h100_tsw`` / ``h100_pcainit`` / ``h_seed100_tsw``  ``init="tswspectral"`` or ``"pca"`` instead of
  the spectral initialisation; ``h50_pcainit``, ``h_seed{100,50,30}_pcainit``, ``a50_pcainit`` likewise.

``--gmm-n-init 3`` overrides every row's GMM restarts (n_init 1 lands in a merged-clusters optimum,
≈ 83% ACC, on some embeddings; see ``--gmm-grid-on ... --gmm-seeds 10``).

``--gmm-grid-on NAME`` re-fits the GMM on that setting's embedding with n_init 1 / 3 and reg_covar
1e-6 / 1e-4 / 1e-3 (the embedding is not recomputed; its UMAP seconds are not repeated).
``--twice`` runs the named settings a second time with the same seed and reports whether the
embedding and the cluster assignments are identical.

Each row splits the UMAP seconds into kNN (pynndescent or faiss), spectral initialisation and the
SGD layout (the rest of ``fit``: fuzzy graph, curve fit, hashing, is "other"), by wrapping umap-learn's
module-level ``nearest_neighbors``, ``spectral_layout`` and ``simplicial_set_embedding``. ``init="pca"``
and ``"tswspectral"`` are not wrapped: their cost is in the SGD column (pca: ≈ 0.3 s).
"load" is the 1-minute load average at the end of the row: above ≈ 2 the 2 cores were shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

T_START = time.perf_counter()

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from clusterbench.metrics import evaluate  # noqa: E402

N_COMPONENTS = 10
N_NEIGHBORS = 20
K = 10


@dataclass(frozen=True)
class Setting:
    name: str
    seeded: bool = False  # random_state=seed (serial) vs None (parallel, n_jobs=threads)
    pca: Optional[int] = None
    knn: str = "pynndescent"  # or "faiss"
    n_epochs: Optional[int] = None
    low_memory: bool = True
    init: str = "spectral"
    gmm_n_init: int = 1
    reg_covar: float = 1e-6


GRID = {
    s.name: s
    for s in [
        Setting("a", seeded=True),
        Setting("b"),
        Setting("c50", pca=50),
        Setting("c32", pca=32),
        Setting("d100", n_epochs=100),
        Setting("d200", n_epochs=200),
        Setting("e_lmF", low_memory=False),
        Setting("f", knn="faiss"),
        Setting("f_seed", knn="faiss", seeded=True),
        Setting("f100", knn="faiss", n_epochs=100),
        Setting("f_seed100", knn="faiss", seeded=True, n_epochs=100),
        Setting("f_pca32", knn="faiss", pca=32),
        Setting("f_seed_pca32", knn="faiss", seeded=True, pca=32),
        Setting("f_seed_pca32_100", knn="faiss", seeded=True, pca=32, n_epochs=100),
        Setting("f_pca32_100", knn="faiss", pca=32, n_epochs=100),
        Setting("a100", seeded=True, n_epochs=100),
        Setting("d50", n_epochs=50),
        Setting("h", knn="hnsw"),
        Setting("h100", knn="hnsw", n_epochs=100),
        Setting("h50", knn="hnsw", n_epochs=50),
        Setting("h_seed", knn="hnsw", seeded=True),
        Setting("h_seed100", knn="hnsw", seeded=True, n_epochs=100),
        Setting("h_seed50", knn="hnsw", seeded=True, n_epochs=50),
        Setting("h100_tsw", knn="hnsw", n_epochs=100, init="tswspectral"),
        Setting("h100_pcainit", knn="hnsw", n_epochs=100, init="pca"),
        Setting("h_seed100_tsw", knn="hnsw", seeded=True, n_epochs=100, init="tswspectral"),
        Setting("h50_pcainit", knn="hnsw", n_epochs=50, init="pca"),
        Setting("h_seed100_pcainit", knn="hnsw", seeded=True, n_epochs=100, init="pca"),
        Setting("h_seed50_pcainit", knn="hnsw", seeded=True, n_epochs=50, init="pca"),
        Setting("h_seed30_pcainit", knn="hnsw", seeded=True, n_epochs=30, init="pca"),
        Setting("a50_pcainit", seeded=True, n_epochs=50, init="pca"),
    ]
}

GMM_GRID = [(1, 1e-6), (3, 1e-6), (1, 1e-4), (1, 1e-3), (3, 1e-4)]


# --------------------------------------------------------------------------- stage timers
class StageTimer:
    """Wraps umap-learn's module-level stage functions to accumulate their wall seconds."""

    NAMES = ("nearest_neighbors", "spectral_layout", "simplicial_set_embedding")

    def __init__(self) -> None:
        import umap.umap_ as uu

        self.seconds = {n: 0.0 for n in self.NAMES}
        for n in self.NAMES:
            setattr(uu, n, self._wrap(n, getattr(uu, n)))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t

        timed.__wrapped__ = fn
        return timed

    def reset(self) -> None:
        for n in self.NAMES:
            self.seconds[n] = 0.0


# --------------------------------------------------------------------------- pieces
def load_run(run: Path) -> tuple[np.ndarray, np.ndarray]:
    x = np.load(run / "features.npy", mmap_mode=None)
    with open(run / "assignments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "label" not in rows[0]:
        raise SystemExit(f"{run / 'assignments.csv'} has no 'label' column")
    names = [r["label"] for r in rows]
    _, y = np.unique(np.asarray(names), return_inverse=True)
    if len(y) != len(x):
        raise SystemExit(f"{len(x)} feature rows but {len(y)} labels in {run}")
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)


def pca_reduce(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(dim, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)


def faiss_cosine_knn(x: np.ndarray, k: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by cosine distance (1 - cos), self included first, as UMAP wants."""
    import faiss

    faiss.omp_set_num_threads(threads)
    xn = np.ascontiguousarray(x, dtype=np.float32).copy()
    faiss.normalize_L2(xn)
    index = faiss.IndexFlatIP(xn.shape[1])
    index.add(xn)
    sims, idx = index.search(xn, k)
    dists = np.maximum(1.0 - sims, 0.0).astype(np.float32)
    # Ties / rounding can put a duplicate ahead of the point itself; UMAP only needs the row's
    # smallest distance first, which holds after search's sort. Force exact zero self-distance.
    self_first = idx[:, 0] == np.arange(len(xn))
    dists[self_first, 0] = 0.0
    return idx.astype(np.int64), dists


def faiss_hnsw_knn(x: np.ndarray, k: int, threads: int, m: int = 16, ef_construction: int = 40, ef_search: int = 64):
    """Approximate cosine kNN by a faiss HNSW graph (inner product on L2-normalised rows), no numba.

    On 70k × 256 DeepCluster features: recall@20 0.999 against exact search, 3.5 s on 2 threads,
    the same neighbours on 1 and 2 threads and run to run (checked on this data, not guaranteed).
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    xn = np.ascontiguousarray(x, dtype=np.float32).copy()
    faiss.normalize_L2(xn)
    index = faiss.IndexHNSWFlat(xn.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(xn)
    index.hnsw.efSearch = ef_search
    sims, idx = index.search(xn, k)
    if (idx < 0).any():
        raise RuntimeError("HNSW returned fewer than k neighbours for some rows; raise ef_search")
    dists = np.maximum(1.0 - sims, 0.0).astype(np.float32)
    dists[idx[:, 0] == np.arange(len(xn)), 0] = 0.0
    return idx.astype(np.int64), dists


def fit_umap(x: np.ndarray, s: Setting, seed: int, threads: int, knn=None) -> np.ndarray:
    import umap

    kw = dict(
        n_components=N_COMPONENTS,
        n_neighbors=N_NEIGHBORS,
        min_dist=0.0,
        metric="cosine",
        low_memory=s.low_memory,
        n_epochs=s.n_epochs,
        init=s.init,
        random_state=seed if s.seeded else None,
        n_jobs=1 if s.seeded else threads,
    )
    if knn is not None:
        kw["precomputed_knn"] = (knn[0], knn[1], None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        return umap.UMAP(**kw).fit_transform(x).astype(np.float64)


def fit_gmm(z: np.ndarray, n_init: int, reg_covar: float, seed: int) -> np.ndarray:
    """As ``clusterbench.cluster.gmm.gmm`` does it: scikit-learn EM, k-means init, max_iter 100."""
    from sklearn.mixture import GaussianMixture

    m = GaussianMixture(K, covariance_type="full", n_init=n_init, reg_covar=reg_covar, max_iter=100, random_state=seed)
    return m.fit(z).predict(z)


def scores(y: np.ndarray, pred: np.ndarray) -> dict:
    m = evaluate(y, pred)
    return {k: round(100 * m[k], 2) for k in ("nmi", "acc", "ari")}


@dataclass
class Row:
    run: str
    setting: str
    repeat: int
    pca_s: float = 0.0
    knn_s: float = 0.0  # pynndescent inside fit, or faiss outside it
    spectral_s: float = 0.0
    sgd_s: float = 0.0
    umap_s: float = 0.0  # PCA + faiss kNN + UMAP.fit, all of the embedding's cost
    gmm_s: float = 0.0
    total_s: float = 0.0
    gmm: str = ""
    nmi: float = 0.0
    acc: float = 0.0
    ari: float = 0.0
    load1: float = 0.0
    same_embedding: Optional[bool] = None
    same_assignments: Optional[bool] = None
    extra: dict = field(default_factory=dict)


def run_setting(x, y, s: Setting, seed: int, threads: int, timer: StageTimer, run_name: str, repeat: int):
    timer.reset()
    row = Row(run_name, s.name, repeat, gmm=f"n_init={s.gmm_n_init} reg={s.reg_covar:g}")
    t0 = time.perf_counter()
    xin = x
    if s.pca:
        t = time.perf_counter()
        xin = pca_reduce(x, s.pca, seed)
        row.pca_s = time.perf_counter() - t
    knn = None
    if s.knn in ("faiss", "hnsw"):
        t = time.perf_counter()
        knn = (faiss_cosine_knn if s.knn == "faiss" else faiss_hnsw_knn)(xin, N_NEIGHBORS, threads)
        row.knn_s = time.perf_counter() - t
    z = fit_umap(xin, s, seed, threads, knn)
    row.umap_s = time.perf_counter() - t0
    row.knn_s += timer.seconds["nearest_neighbors"]
    row.spectral_s = timer.seconds["spectral_layout"]
    row.sgd_s = timer.seconds["simplicial_set_embedding"] - timer.seconds["spectral_layout"]
    t = time.perf_counter()
    pred = fit_gmm(z, s.gmm_n_init, s.reg_covar, seed)
    row.gmm_s = time.perf_counter() - t
    row.total_s = time.perf_counter() - t0
    row.__dict__.update(scores(y, pred))
    row.load1 = os.getloadavg()[0]
    return row, z, pred


def warm_up(settings: list[Setting], threads: int, seed: int, d: int) -> float:
    """Compile the numba paths the chosen settings use, on 5,000 random points (≥ 4096: umap-learn's
    pynndescent path; below it umap-learn takes an exact path that compiles other code)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5000, d)).astype(np.float32)
    t = time.perf_counter()
    knn = None
    for s in sorted({(s.knn == "pynndescent", s.seeded, s.low_memory, s.init) for s in settings}):
        own_knn, seeded, low_memory, init = s
        if not own_knn and knn is None:
            knn = faiss_cosine_knn(x, N_NEIGHBORS, threads)
        w = Setting("warm", seeded=seeded, n_epochs=5, low_memory=low_memory, init=init)
        fit_umap(x, w, seed, threads, None if own_knn else (knn[0].copy(), knn[1].copy()))
    return time.perf_counter() - t


def fmt(r: Row) -> str:
    same = "" if r.same_embedding is None else (
        "yes (identical)" if r.same_embedding else (
            "labels identical" if r.same_assignments
            else f"no: {r.extra.get('agreement_acc', 0):.2f}% of labels agree (matched), ARI {r.extra.get('agreement_ari', 0):.1f}"
        )
    )
    return (
        f"| {r.run} | {r.setting}{'' if r.repeat == 0 else ' (2nd)'} | {r.pca_s:.1f} | {r.knn_s:.1f} | {r.spectral_s:.1f} | "
        f"{r.sgd_s:.1f} | {r.umap_s:.1f} | {r.gmm} | {r.gmm_s:.1f} | {r.total_s:.1f} | "
        f"{r.nmi:.1f} / {r.acc:.1f} / {r.ari:.1f} | {same} | {r.load1:.1f} |"
    )


HEAD = (
    "| run | setting | PCA s | kNN s | spectral s | SGD s | UMAP s (all) | GMM | GMM s | total s | NMI / ACC / ARI % "
    "| same as 1st run | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--settings", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument("--twice", nargs="*", default=[], help="settings to run a second time (same seed)")
    parser.add_argument("--gmm-grid-on", nargs="*", default=[], help="settings whose embedding gets the GMM grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="append every row as a JSON line")
    parser.add_argument("--gmm-n-init", type=int, default=None, help="override every setting's GMM n_init (default 1)")
    parser.add_argument("--gmm-seeds", type=int, default=1, help="GMM grid: fit each GMM setting with seeds 0..N-1")
    parser.add_argument(
        "--no-warmup", action="store_true",
        help="skip the JIT warm-up: the first row then pays numba's compile, as a fresh process would",
    )
    args = parser.parse_args()

    import numba
    import pynndescent
    import umap

    import_s = time.perf_counter() - T_START
    numba.set_num_threads(args.threads)
    timer = StageTimer()

    x0, _ = load_run(args.runs[0])
    warm_s = 0.0 if args.no_warmup else warm_up([GRID[n] for n in args.settings], args.threads, args.seed, x0.shape[1])
    del x0
    print(
        f"umap-learn {umap.__version__}, pynndescent {pynndescent.__version__}, numba {numba.__version__} "
        f"(threading layer {numba.threading_layer()}), threads {args.threads}, "
        f"NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR', '(unset)')}",
        flush=True,
    )
    if args.no_warmup:
        print("no JIT warm-up: the first row includes numba's compile of its path", flush=True)
    else:
        print(f"numba JIT warm-up (5,000 random points, the chosen settings' paths; not in any row): {warm_s:.1f} s", flush=True)
    print(f"imports (numpy, numba, umap, clusterbench.metrics): {import_s:.1f} s", flush=True)
    print(HEAD, flush=True)

    for run in args.runs:
        x, y = load_run(run)
        name = run.name
        first: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for sname in args.settings:
            s = GRID[sname]
            if args.gmm_n_init is not None:
                s = replace(s, gmm_n_init=args.gmm_n_init)
            for rep in range(2 if sname in args.twice else 1):
                row, z, pred = run_setting(x, y, s, args.seed, args.threads, timer, name, rep)
                if rep == 0:
                    first[sname] = (z, pred)
                else:
                    z0, p0 = first[sname]
                    row.same_embedding = bool(np.array_equal(z0, z))
                    row.same_assignments = bool(np.array_equal(p0, pred))
                    row.extra["max_abs_embedding_diff"] = float(np.max(np.abs(z0 - z)))
                    agree = evaluate(p0, pred)
                    row.extra["agreement_acc"] = round(100 * agree["acc"], 2)
                    row.extra["agreement_ari"] = round(100 * agree["ari"], 2)
                print(fmt(row), flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(asdict(row)) + "\n")
        for sname in args.gmm_grid_on:
            if sname not in first:
                continue
            z, _ = first[sname]
            for n_init, reg in GMM_GRID:
                per_seed = []
                for gs in range(args.gmm_seeds) if args.gmm_seeds > 1 else [args.seed]:
                    tg = time.perf_counter()
                    pred = fit_gmm(z, n_init, reg, gs)
                    per_seed.append((time.perf_counter() - tg, scores(y, pred)))
                label = f"{sname} → GMM grid" + (f" (seeds 0..{args.gmm_seeds - 1}: mean; worst ACC)" if args.gmm_seeds > 1 else "")
                r = Row(name, label, 0, gmm=f"n_init={n_init} reg={reg:g}", gmm_s=float(np.mean([t for t, _ in per_seed])))
                r.total_s = r.gmm_s
                r.__dict__.update({k: float(np.mean([m[k] for _, m in per_seed])) for k in ("nmi", "acc", "ari")})
                accs = [m["acc"] for _, m in per_seed]
                r.extra.update(worst_acc=min(accs), below_95=sum(a < 95 for a in accs), n=len(accs))
                r.load1 = os.getloadavg()[0]
                line = fmt(r)
                if args.gmm_seeds > 1:
                    line += f" worst ACC {min(accs):.1f}, {r.extra['below_95']}/{len(accs)} seeds below 95% ACC"
                print(line, flush=True)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(asdict(r)) + "\n")


    print(f"process wall (imports, warm-up, loading, every row): {time.perf_counter() - T_START:.1f} s", flush=True)


if __name__ == "__main__":
    main()
