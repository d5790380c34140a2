"""Built-in embedders on real PennFudan images: speed, near-duplicate recall, and 1-NN accuracy on
pedestrian-vs-background crops, side by side (pHash, dHash, EfficientNet-Lite0 via onnxruntime, and
torch eager for the speed reference when torch and efficientnet-lite-pytorch are installed).

* **speed**: ms per image for a batch of decoded PIL images (decoding excluded; resize included),
  best of ``--repeat``; onnxruntime and torch limited to ``--threads`` threads.
* **near-duplicate recall**: every image is edited five ways (JPEG quality 40, half size, 85 % crop,
  brightness x1.35, mirror); an edit is *found* when its nearest original (Hamming distance for hashes,
  cosine for vectors) is its source (recall@1). For hashes also recall at ``max_hamming=10`` (Nucleus'
  default threshold) and how many distinct originals fall within it (false pairs).
* **crop 1-NN accuracy**: pedestrian boxes from the masks and same-size background boxes that overlap
  no pedestrian, from the same images; images split in halves; each test crop takes the class of its
  nearest training crop.

Usage: ``python benchmarks/embedders.py [--limit 170] [--threads 2] [--repeat 2]``
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.similarity import hashes  # noqa: E402
from engine.similarity.embedders import resolve_embedder  # noqa: E402

EDITS = ("reencode", "resize", "crop", "brighten", "mirror")


def edit(im: Image.Image, how: str, rng: np.random.Generator) -> Image.Image:
    W, H = im.size
    if how == "reencode":
        import io

        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=40)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if how == "resize":
        return im.resize((W // 2, H // 2), Image.Resampling.BILINEAR)
    if how == "crop":
        cw, ch = round(W * 0.85), round(H * 0.85)
        x, y = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
        return im.crop((x, y, x + cw, y + ch))
    if how == "brighten":
        return ImageEnhance.Brightness(im).enhance(1.35)
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def crops(paths: list[Path], rng: np.random.Generator) -> tuple[list[Image.Image], np.ndarray, np.ndarray]:
    """Pedestrian and background crops, their labels (1 = pedestrian) and source image index."""
    out, label, src = [], [], []
    for i, p in enumerate(paths):
        im = Image.open(p).convert("RGB")
        mask = np.asarray(Image.open(p.parent.parent / "PedMasks" / f"{p.stem}_mask.png"))
        boxes = []
        for k in np.unique(mask)[1:]:
            ys, xs = np.nonzero(mask == k)
            boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
        occupied = np.zeros(mask.shape, bool)
        for x0, y0, x1, y1 in boxes:
            occupied[y0:y1, x0:x1] = True
        for x0, y0, x1, y1 in boxes:
            out.append(im.crop((x0, y0, x1, y1)))
            label.append(1)
            src.append(i)
            w, h = x1 - x0, y1 - y0
            for _ in range(50):  # a same-size box that touches no pedestrian
                bx, by = int(rng.integers(0, im.width - w + 1)), int(rng.integers(0, im.height - h + 1))
                if not occupied[by:by + h, bx:bx + w].any():
                    out.append(im.crop((bx, by, bx + w, by + h)))
                    label.append(0)
                    src.append(i)
                    break
    return out, np.array(label), np.array(src)


def nearest(emb, queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Index of each query's nearest base row and the distance (Hamming or 1 - cosine)."""
    if emb.kind == "hash":
        d = hashes.hamming(queries[:, None], base[None, :])
        return d.argmin(1), d.min(1)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    s = q @ b.T
    return s.argmax(1), 1 - s.max(1)


def run_batched(emb, images: list[Image.Image], batch: int = 16) -> np.ndarray:
    return np.concatenate([emb(images[i:i + batch]) for i in range(0, len(images), batch)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "PennFudanPed"))
    ap.add_argument("--limit", type=int, default=170)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    paths = sorted((Path(args.data) / "PNGImages").glob("*.png"))[: args.limit]
    images = [Image.open(p).convert("RGB") for p in paths]
    rng = np.random.default_rng(0)
    edits = [(i, how, edit(im, how, rng)) for i, im in enumerate(images) for how in EDITS]
    crop_ims, crop_y, crop_src = crops(paths, np.random.default_rng(1))
    train = crop_src % 2 == 0
    print(f"{len(images)} PennFudan images, {len(edits)} edits, {len(crop_ims)} crops "
          f"({int(crop_y.sum())} pedestrian), {args.threads} threads")

    embedders = {"phash": resolve_embedder("phash"), "dhash": resolve_embedder("dhash")}
    try:
        from engine.similarity.efficientnet import EfficientNetLite0

        embedders["efficientnet-lite0 (onnxruntime)"] = EfficientNetLite0(threads=args.threads)
    except Exception as e:  # noqa: BLE001 - a missing extra is reported, not fatal
        print(f"efficientnet-lite0 skipped: {e}")
    torch_ms = None
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        from engine.similarity import efficientnet

        torch.set_num_threads(args.threads)
        net = EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(torch.load(efficientnet.weights_path(), map_location="cpu"))
        net.eval()
        sample = images[:32]
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            with torch.no_grad():
                for i in range(0, len(sample), 16):
                    net.extract_features(torch.from_numpy(efficientnet.preprocess(sample[i:i + 16]))).mean((2, 3))
            best = min(best, time.perf_counter() - t0)
        torch_ms = 1000 * best / len(sample)
    except ImportError:
        pass

    rows = []
    for name, emb in embedders.items():
        emb(images[:2])  # warm-up (builds the ONNX session)
        sample = images[:64]
        best = min(_timed(lambda: run_batched(emb, sample)) for _ in range(args.repeat))
        base = run_batched(emb, images)
        q = run_batched(emb, [e[2] for e in edits])
        src = np.array([e[0] for e in edits])
        nn, dist = nearest(emb, q, base)
        r1 = float((nn == src).mean())
        per_edit = {how: float((nn == src)[[e[1] == how for e in edits]].mean()) for how in EDITS}
        extra = ""
        if emb.kind == "hash":
            d_src = hashes.hamming(q, base[src])
            r10 = float((d_src <= 10).mean())
            dd = hashes.hamming(base[:, None], base[None, :])
            false_pairs = int((np.triu(dd <= 10, 1)).sum())
            extra = f"recall@hamming<=10 {r10:.3f}, distinct originals within 10: {false_pairs} pairs"
        e = run_batched(emb, crop_ims)
        idx, _ = nearest(emb, e[~train], e[train])
        acc = float((crop_y[train][idx] == crop_y[~train]).mean())
        rows.append((name, 1000 * best / len(sample), r1, acc, per_edit, extra))
    print(f"\n{'embedder':36s} {'ms/image':>9s} {'dup recall@1':>13s} {'crop 1-NN acc':>14s}")
    for name, ms, r1, acc, per_edit, extra in rows:
        print(f"{name:36s} {ms:9.1f} {r1:13.3f} {acc:14.3f}")
        print(f"{'':36s} per edit: " + ", ".join(f"{k} {v:.2f}" for k, v in per_edit.items()))
        if extra:
            print(f"{'':36s} {extra}")
    if torch_ms is not None:
        print(f"{'efficientnet-lite0 (torch eager)':36s} {torch_ms:9.1f}")
        onnx_ms = [r[1] for r in rows if r[0].startswith("efficientnet")]
        if onnx_ms:
            print(f"ratio onnxruntime / torch eager: {onnx_ms[0] / torch_ms:.2f}x")
    majority = max(crop_y[~train].mean(), 1 - crop_y[~train].mean())
    print(f"crop majority-class baseline: {majority:.3f}")
    return 0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
