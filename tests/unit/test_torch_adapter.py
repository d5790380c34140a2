"""PyTorch adapter: a DataLoader over a slice yields torchvision-format targets equal to the stored labels,
and a small model's outputs round-trip into a committed run equal to the same boxes uploaded natively."""
from __future__ import annotations

import os

import numpy as np
import pytest

import engine
import sample_data
from tests.conftest import shared_path

if os.environ.get("CI"):
    import torch  # CI installs torch (.ci/run): the adapter's tests never skip there
else:
    torch = pytest.importorskip("torch", reason="the PyTorch adapter's tests need torch (pip install 'loupe[torch]')")

from engine.integrations.torch import collate, predictions_from_outputs  # noqa: E402


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch") / "street"
    sample_data.generate(str(root), n_images=10)
    ws = engine.connect()
    ws.import_pennfudan(str(root), dataset="street")
    ds = ws.get_dataset("street")
    refs = ds.items().column("reference_id").to_pylist()
    ds.create_slice("train", reference_ids=refs[:6])
    yield ds
    ws.close()


def test_targets_are_the_stored_labels(street):
    tds = street.to_torch(slice="train")
    assert isinstance(tds, torch.utils.data.Dataset) and len(tds) == 6
    ann = street.annotations().to_pylist()
    for i in range(len(tds)):
        img, t = tds[i]
        ref = tds.reference_ids[i]
        mine = [a for a in ann if a["reference_id"] == ref]
        row = street.items().to_pylist()
        w, h = next((r["width"], r["height"]) for r in row if r["reference_id"] == ref)
        assert img.shape == (3, h, w) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
        expect = np.array([[a["x"], a["y"], a["x"] + a["width"], a["y"] + a["height"]] for a in mine], np.float32)
        assert np.array_equal(t["boxes"].numpy(), expect.reshape(-1, 4))
        assert t["labels"].dtype == torch.int64 and t["labels"].tolist() == [tds.label_map[a["label"]] for a in mine]
        assert t["image_id"] == i and t["iscrowd"].tolist() == [0] * len(mine)
        assert t["masks"].shape == (len(mine), h, w) and t["masks"].dtype == torch.uint8
        assert t["masks"].sum(dim=(1, 2)).tolist() == [int(a["area"]) for a in mine]  # the stored mask areas


def test_dataloader_batches_and_transforms(street):
    def flip(image, target):
        target = dict(target)
        w = image.shape[-1]
        b = target["boxes"].clone()
        target["boxes"] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
        return image.flip(-1), target

    tds = street.to_torch(slice="train", transforms=flip, masks=False)
    loader = torch.utils.data.DataLoader(tds, batch_size=4, collate_fn=collate, num_workers=0)
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 2]
    img, t = batches[0][0][0], batches[0][1][0]
    raw_img, raw_t = street.to_torch(slice="train", masks=False)[0]
    assert torch.equal(img, raw_img.flip(-1)) and "masks" not in t
    assert torch.allclose(t["boxes"][:, 0], img.shape[-1] - raw_t["boxes"][:, 2])


def test_unknown_label_is_named(street):
    with pytest.raises(engine.ValidationError, match="label 'pedestrian' is not in label_map"):
        street.to_torch(label_map={"car": 1})


class TinyDetector(torch.nn.Module):
    """An untrained conv net (fixed seed) with torchvision's detection output format: one box per image."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 3)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, images):
        out = []
        for im in images:
            v = torch.sigmoid(self.pool(self.conv(im[None])).flatten())
            h, w = im.shape[-2:]
            x1, y1 = v[0] * w / 2, v[1] * h / 2
            box = torch.stack([x1, y1, x1 + v[2] * w / 2, y1 + v[3] * h / 2])[None]
            out.append({"boxes": box, "scores": v[4:5], "labels": torch.ones(1, dtype=torch.int64)})
        return out


def test_model_outputs_round_trip_into_a_committed_run(street):
    tds = street.to_torch(masks=False)
    model = TinyDetector().eval()
    outputs, refs = [], []
    with torch.no_grad():
        for images, targets in torch.utils.data.DataLoader(tds, batch_size=3, collate_fn=collate):
            outputs += model(list(images))
            refs += [tds.reference_ids[t["image_id"]] for t in targets]
    table = predictions_from_outputs(outputs, refs, tds.label_map)
    ws = street.ws
    run = ws.add_model("tiny", "tiny-v1").create_run("tiny-1", street, table)
    got = run.commit()
    native = [engine.BoxPrediction(label="pedestrian", reference_id=r, annotation_id=f"{r}:0",
                                   x=float(o["boxes"][0, 0]), y=float(o["boxes"][0, 1]),
                                   width=float(o["boxes"][0, 2]) - float(o["boxes"][0, 0]),
                                   height=float(o["boxes"][0, 3]) - float(o["boxes"][0, 1]),
                                   confidence=float(o["scores"][0])) for o, r in zip(outputs, refs)]
    run2 = ws.get_model("tiny-v1").create_run("tiny-2", street, native)
    assert got["stats"] == run2.commit()["stats"]
    assert run.predictions().num_rows == len(refs)
    with pytest.raises(engine.ValidationError, match="label index 7"):
        predictions_from_outputs([{"boxes": torch.zeros(1, 4), "scores": torch.ones(1),
                                   "labels": torch.tensor([7])}], ["x"], tds.label_map)


def test_pennfudan_loader(tmp_path):
    root = shared_path("PennFudanPed")
    ws = engine.connect()
    ws.import_pennfudan(str(root), dataset="pf")
    ds = ws.get_dataset("pf")
    ds.create_slice("test", reference_ids=ds.items().column("reference_id").to_pylist()[-8:])
    loader = torch.utils.data.DataLoader(ds.to_torch(slice="test"), batch_size=4, collate_fn=collate)
    n = sum(len(t["boxes"]) for _, targets in loader for t in targets)
    assert n == ds.get_slice("test").objects().num_rows
    ws.close()
