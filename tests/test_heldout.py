"""eval.split: fit on the train split, score the test split with a model that never saw it."""

from __future__ import annotations

import numpy as np
import torch

from clusterbench.methods.deep import DeepMethod

TINY = ["dataset=synthetic", "dataset.num_samples=200", "hardware=cpu", "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=0",
        "backbone=strided", "backbone.widths=[8,16]", "method=moco", "method.queue_size=64", "method.head_hidden=32", "method.feature_dim=16"]


def test_train_to_test_scores_images_the_model_never_saw(run_cli, run_predict, monkeypatch, tmp_path):
    seen = []
    original = DeepMethod.fit_predict

    def spy(self, data, ctx):
        seen.append(data.train_images().clone())
        return original(self, data, ctx)

    monkeypatch.setattr(DeepMethod, "fit_predict", spy)
    r = run_cli(*TINY, "dataset.split=train", "eval.split=test", "eval.knn=true", "eval.knn_k=10")
    assert r.code == 0, r.err
    m = r.metrics()
    from clusterbench.data.synthetic import load_synthetic  # the same images the run loaded

    test = load_synthetic(num_samples=200, split="test").images
    train = load_synthetic(num_samples=200, split="train").images
    assert torch.equal(seen[0], train)  # fitted on the train split alone
    trained_on = {bytes(x.numpy().tobytes()) for x in seen[0]}
    assert not any(bytes(x.numpy().tobytes()) in trained_on for x in test)
    assert m["split"] == "test" and m["fit_split"] == "train" and m["n_samples"] == len(test)
    assert m["protocol"].startswith("split=train→test") and "eval." not in m["variant"].replace("trainer.eval_every", "")
    assert set(m["fit_scores"]) == {"nmi", "acc", "ari"}
    assert m["probes"]["split"].startswith("train → test") and m["probes"]["n_train"] == len(train) and m["probes"]["n_test"] == len(test)
    assert len(np.load(r.run_dir / "assignments.npy")) == len(test)
    # the same ids as clusterbench-predict gives the test images afterwards
    code, _, err = run_predict(str(r.run_dir), "dataset=synthetic", "dataset.num_samples=200", "dataset.split=test", "--out", str(tmp_path / "p"))
    assert code == 0, err
    a = (r.run_dir / "assignments.csv").read_text().splitlines()[1:]
    b = (tmp_path / "p" / "assignments.csv").read_text().splitlines()[1:]
    assert [line.split(",")[2] for line in a] == [line.split(",")[2] for line in b]


def test_overlapping_or_unknown_eval_splits_are_one_line_errors(run_cli):
    for args, words in ((("eval.split=test",), "overlap"), (("dataset.split=train", "eval.split=val"), "'val' is not a split")):
        r = run_cli(*TINY, *args)
        assert r.code == 2 and words in r.err and r.err.count("\n") == 1, r.err
