"""compute_embeddings: the driver with plain callables (resume, skip, object crops, bad embedder output)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import engine
from engine import BoxAnnotation, ValidationError

N = 7


def mean_colour(images):
    """3-d embedding: the mean RGB of each image (deterministic, tells images and crops apart)."""
    return np.stack([np.asarray(im, np.float32).reshape(-1, 3).mean(0) for im in images])


@pytest.fixture()
def ds(tmp_path):
    ws = engine.connect()
    d = ws.create_dataset("c")
    items = []
    for i in range(N):
        p = tmp_path / f"im{i}.png"
        a = np.zeros((20, 30, 3), np.uint8)
        a[:, :, 0] = 30 * i
        a[:10, :15, 1] = 200  # the box region differs from the whole image
        Image.fromarray(a).save(p)
        items.append(engine.DatasetItem(image_location=str(p), reference_id=f"im{i}"))
    d.append(items)
    d.annotate([BoxAnnotation(label="x", reference_id=f"im{i}", annotation_id="b", x=0, y=0, width=15, height=10)
                for i in range(N)])
    yield d
    ws.close()


def test_item_embeddings_resume_and_skip(ds):
    calls = []

    def flaky(images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted during the second batch
        return mean_colour(images)

    with pytest.raises(KeyboardInterrupt):
        ds.compute_embeddings(flaky, name="rgb", batch_size=3, progress=False)
    assert ds.embeddings().column("count").to_pylist() == [3]  # the first batch was kept
    seen = []
    r = ds.compute_embeddings(mean_colour, name="rgb", batch_size=3, progress=lambda d, t: seen.append((d, t)))
    assert (r["computed"], r["skipped"], r["total"]) == (N - 3, 3, N)
    assert seen[-1] == (N - 3, N - 3)
    again = ds.compute_embeddings(mean_colour, name="rgb", progress=False)
    assert again["computed"] == 0 and again["total"] == N
    t = ds.ws.sql("SELECT i.reference_id, v.vector FROM embedding_vectors_3 v JOIN items i USING (item_id) "
                  "ORDER BY i.item_id")
    assert t.column(0).to_pylist() == [f"im{i}" for i in range(N)]  # every item once, none twice
    want = mean_colour([Image.open(ds.items().column("image_location")[i].as_py()).convert("RGB") for i in range(N)])
    np.testing.assert_allclose(np.asarray(t.column(1).to_pylist()), want, rtol=1e-6)


def test_object_level_embeds_crops(ds):
    r = ds.compute_embeddings(mean_colour, level="gt", name="crops", progress=False)
    assert r["computed"] == N
    t = ds.ws.sql("SELECT vector FROM embedding_vectors_3 v JOIN embedding_sets s USING (set_id) "
                  "WHERE s.name = 'crops' ORDER BY item_id")
    v = np.asarray(t.column(0).to_pylist())
    assert np.allclose(v[:, 1], 200)  # the crop is the green box only
    assert np.allclose(v[:, 0], 30 * np.arange(N))


def test_bad_embedder_output_writes_nothing(ds):
    with pytest.raises(ValidationError, match="im0"):
        ds.compute_embeddings(lambda ims: np.full((len(ims), 2), np.nan), name="nan", progress=False)
    with pytest.raises(ValidationError, match="shape"):
        ds.compute_embeddings(lambda ims: np.ones((1, 2)), name="short", batch_size=4, progress=False)
    assert len(ds.embeddings()) == 0
