"""Pooling a stay's records inside the model: attention over a set of images (finds the one
informative image among several), a BiLSTM over a time-ordered note sequence (reads a trend),
and the per-stay record sets both read."""

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from pipeline.embed.modalities import stay_embedding
from pipeline.modeling.estimators import EarlyFusionClassifier
from pipeline.modeling.inputs import ModelInputs, presence
from pipeline.modeling.pooling import AttentionPool, BiLSTMPool


def test_attention_pool_ignores_padding_and_order_and_pools_nothing_to_zero():
    torch.manual_seed(0)
    pool = AttentionPool(dim=4)
    x = torch.randn(3, 5, 4)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.float32)
    pooled = pool(x, mask)
    garbage = x.clone()
    garbage[0, :2] = 100.0  # padded slots: any content, no effect
    torch.testing.assert_close(pool(garbage, mask)[0], pooled[0])
    order = torch.tensor([4, 2, 0, 3, 1])
    torch.testing.assert_close(pool(x[:, order], mask[:, order])[1], pooled[1])
    torch.testing.assert_close(pooled[2], torch.zeros(4))
    weights = pool.weights(x, mask)
    torch.testing.assert_close(weights.sum(dim=1), torch.tensor([1.0, 1.0, 0.0]))


def test_attention_pooling_yields_each_stays_latest_record_set():
    times = pd.to_datetime(["2026-01-01 08:00", "2026-01-01 09:00", "2026-01-01 10:00", "2026-01-02 09:00"])
    records = pd.DataFrame({"stay_id": [1, 1, 1, 1], "time": times, "arrival_time": times,
                            "content_hash": ["a", "b", "c", "late"]})
    vectors = {h: np.full(2, i + 1, np.float32) for i, h in enumerate(["a", "b", "c", "late"])}
    keys = pd.DataFrame({"stay_id": [1, 2], "prediction_time": pd.to_datetime(["2026-01-02", "2026-01-02"])})
    sets, mask = stay_embedding(records, vectors, keys, 2, {"pooling": "attention", "max_records": 2})
    assert sets.shape == (2, 2, 2) and mask.tolist() == [[True, True], [False, False]]
    assert sets[0, :, 0].tolist() == [2.0, 3.0]  # the two latest available by midnight, oldest first
    assert presence(mask).tolist() == [True, False]
    pooled, present = stay_embedding(records, vectors, keys, 2, {"pooling": "mean"})
    assert pooled.shape == (2, 2) and present.tolist() == [True, False]


def image_sets(n: int, seed: int) -> tuple[ModelInputs, np.ndarray]:
    """1-5 images per patient; a positive patient has one abnormal image (a shift along one
    direction of the embedding), the rest are normal: mean pooling dilutes that image, attention
    can pick it out."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.4).astype(int)
    counts = rng.integers(1, 6, size=n)
    sets = rng.normal(size=(n, 5, 8)).astype(np.float32)
    mask = np.arange(5)[None, :] >= 5 - counts[:, None]
    for row in np.flatnonzero(y):
        slot = rng.integers(5 - counts[row], 5)
        sets[row, slot, 0] += 3.0
    sets[~mask] = 0.0
    tabular = pd.DataFrame({"age": rng.normal(60, 10, n)})
    return ModelInputs(tabular=tabular, embeddings={"images": sets}, masks={"images": mask}), y


def test_fusion_learns_attention_weights_that_find_the_abnormal_image():
    train, y = image_sets(1200, seed=1)
    test, y_test = image_sets(600, seed=2)
    params = dict(modalities=("tabular", "images"), epochs=80, patience=15, modality_dropout=0.0, hidden=16)
    attention = EarlyFusionClassifier(**params).fit(train, y)
    as_mean = lambda inputs: ModelInputs(  # noqa: E731  the same sets, mean-pooled
        inputs.tabular, {"images": inputs.embeddings["images"].sum(1) / np.maximum(inputs.masks["images"].sum(1), 1)[:, None]},
        {"images": presence(inputs.masks["images"])})
    mean = EarlyFusionClassifier(**params).fit(as_mean(train), y)
    auc_attention = roc_auc_score(y_test, attention.predict_risk(test))
    auc_mean = roc_auc_score(y_test, mean.predict_risk(as_mean(test)))
    assert auc_attention > 0.9 and auc_attention > auc_mean + 0.03, (auc_attention, auc_mean)

    xs, masks = attention._tensors(test)
    with torch.no_grad():
        weights = attention.net_.pools["images"].weights(xs["images"], masks["images"]).numpy()
    abnormal = test.embeddings["images"][..., 0] > 2.0
    rows = np.flatnonzero((y_test == 1) & (test.masks["images"].sum(1) >= 3) & (abnormal.sum(1) == 1))
    on_abnormal = weights[rows][abnormal[rows]]
    assert on_abnormal.mean() > 0.6, on_abnormal.mean()  # most of the weight on the one abnormal image
    assert np.isfinite(attention.predict_risk(ModelInputs(test.tabular, test.embeddings,
                                                          {"images": np.zeros_like(test.masks["images"])}))).all()
    assert any(f["factor"] == "images" for row in attention.explain(test.take(rows[:10]), top_k=2) for f in row)


def test_bilstm_pool_ignores_front_padding_and_sees_order():
    torch.manual_seed(0)
    pool = BiLSTMPool(dim=3, hidden=4)
    seq = torch.randn(1, 3, 3)
    short = torch.cat([torch.zeros(1, 2, 3), seq], dim=1)  # the same three records, padded to five
    long_mask = torch.tensor([[0, 0, 1, 1, 1]], dtype=torch.float32)
    with torch.no_grad():
        a = pool(seq, torch.ones(1, 3))
        b = pool(short, long_mask)
        garbage = short.clone()
        garbage[0, :2] = 50.0
        c = pool(garbage, long_mask)
        reversed_ = pool(seq.flip(1), torch.ones(1, 3))
        empty = pool(torch.zeros(2, 4, 3), torch.zeros(2, 4))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b, c)
    assert not torch.allclose(a, reversed_)  # order matters, unlike attention
    assert a.shape == (1, 8) and torch.equal(empty, torch.zeros(2, 8))


def note_trends(n: int, seed: int) -> tuple[ModelInputs, np.ndarray]:
    """3-5 notes per stay whose first embedding direction drifts up (deteriorating: event) or
    down over time; the same set of values in either order, so only the order tells."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.5).astype(int)
    sets = rng.normal(0, 0.3, size=(n, 5, 6)).astype(np.float32)
    mask = np.zeros((n, 5), bool)
    for row in range(n):
        k = int(rng.integers(3, 6))
        trend = np.linspace(-1, 1, k) * (1 if y[row] else -1)
        sets[row, 5 - k:, 0] += trend
        mask[row, 5 - k:] = True
    sets[~mask] = 0.0
    return ModelInputs(tabular=pd.DataFrame({"age": rng.normal(60, 10, n)}), embeddings={"notes": sets},
                       masks={"notes": mask}), y


def test_a_bilstm_over_note_sequences_reads_a_trend_that_attention_cannot():
    train, y = note_trends(1000, 1)
    test, y_test = note_trends(500, 2)
    params = dict(modalities=("tabular", "notes"), epochs=60, patience=12, modality_dropout=0.0, hidden=16)
    bilstm = EarlyFusionClassifier(**params, sequence_pooling={"notes": "bilstm"}).fit(train, y)
    attention = EarlyFusionClassifier(**params, sequence_pooling={"notes": "attention"}).fit(train, y)
    auc_bilstm = roc_auc_score(y_test, bilstm.predict_risk(test))
    auc_attention = roc_auc_score(y_test, attention.predict_risk(test))
    assert auc_bilstm > 0.9 and auc_bilstm > auc_attention + 0.1, (auc_bilstm, auc_attention)
