"""The inference fast path: encoded frames in, boxes and frame statistics out, in batches.

Ultralytics' `predict` takes one image at a time through per-call setup, host-side letterbox and
`Results` objects. Here a batch goes through the model as tensors: frames are decoded, letterboxed
(the arithmetic of Ultralytics' `LetterBox`, with the minimal rectangle per frame shape that
`predict` uses for one image), one forward pass per model input shape (fp16 on CUDA), then
Ultralytics' own NMS and box scaling; only boxes and two small thumbnails per frame come back to
the host. What the model sees and finds is what `predict` would on the same frame.

Where the frame work runs depends on the device. On CUDA it stays there: nvjpeg decodes the batch
and the letterbox and thumbnails are a few batched kernels per frame shape. On the CPU, OpenCV's
uint8 routines beat torch's float ones on full-size frames several times over, so each frame is
decoded, letterboxed and reduced to its thumbnails in a thread pool, and only the model's input
is stacked into a tensor.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.nms import non_max_suppression
from ultralytics.utils.ops import scale_boxes

log = logging.getLogger(__name__)
# torchvision 0.29 warns on every decode that TorchCodec will take its image codecs over; its
# decoders (nvjpeg included) are still the ones this pipeline is built on.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated"
)

JPEG_MAGIC = b"\xff\xd8\xff"
PAD_VALUE = 114  # Ultralytics' letterbox grey
IOU = 0.7  # Ultralytics' predict default
MAX_DET = 300
# On a few CPU cores the forward pass costs least per frame in batches of about 4 (measured on
# 2 cores, 640x640: 29 ms a frame in 4s, 37 in 8s, 42 one by one); on a GPU, the larger the
# batch, the better.
CPU_FORWARD_BATCH = 4
GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma of R, G, B, as OpenCV's RGB2GRAY
LUMA_SIZE = (64, 64)  # (height, width) of the thumbnail for brightness and contrast
HASH_SIZE = (8, 9)  # 8 rows of 9: 8 left/right comparisons a row, a 64-bit difference hash


@dataclass(frozen=True)
class FrameOutput:
    """One frame's result: its size, detections (rows of x1, y1, x2, y2 in its pixels, score,
    class index) and grey thumbnails (luma 64x64, hash 8x9, rounded like OpenCV's uint8)."""

    height: int
    width: int
    boxes: torch.Tensor
    luma: torch.Tensor
    hash_thumb: torch.Tensor


@dataclass(frozen=True)
class HostFrame:
    """A frame made ready on the host: letterboxed (H, W, 3) RGB, its original size, thumbnails."""

    letterboxed: np.ndarray
    size: tuple[int, int]
    luma: torch.Tensor
    hash_thumb: torch.Tensor


@dataclass(frozen=True)
class Inputs:
    """Frames letterboxed to one model input shape: the batch, where each frame came from (its
    index in the call, its height and width) and its thumbnails."""

    indices: list[int]
    sizes: list[tuple[int, int]]
    batch: torch.Tensor
    luma: torch.Tensor
    hash_thumb: torch.Tensor


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:1`, `0` (Ultralytics' shorthand); CUDA asked for but absent falls
    back to the CPU, so a worker on a machine without a GPU still serves its cameras."""
    device = torch.device(f"cuda:{name}" if name.isdigit() else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        log.warning("device %s asked for but CUDA is not available: running on the CPU", name)
        return torch.device("cpu")
    return device


class Pipeline:
    """A loaded detection model and the batched steps around it, on one device."""

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        device: torch.device,
        half: bool,
        image_size: int,
        thresholds: Sequence[float],
        frames_on_device: bool | None = None,
    ) -> None:
        """`net`: an Ultralytics detection model (fused here); `thresholds`: the minimum score
        per class index; `frames_on_device`: decode and letterbox with torch on the device
        (default: anywhere but the CPU)."""
        self.device = device
        self.frames_on_device = (
            device.type != "cpu" if frames_on_device is None else frames_on_device
        )
        self.dtype = torch.float16 if half and device.type == "cuda" else torch.float32
        net = net.fuse(verbose=False) if hasattr(net, "fuse") else net
        # channels-last, as Ultralytics' loader does on x86 CPUs: oneDNN's and cuDNN's (fp16)
        # convolutions work in NHWC
        self.net = net.to(device=device, dtype=self.dtype, memory_format=torch.channels_last)
        self.net.eval().requires_grad_(False)
        self.forward_batch = CPU_FORWARD_BATCH if device.type == "cpu" else None
        self.stride = max(int(net.stride.max()), 32) if hasattr(net, "stride") else 32
        self.image_size = int(check_imgsz(image_size, stride=self.stride))
        self.end2end = bool(getattr(net, "end2end", False))
        self.thresholds = torch.tensor(thresholds, dtype=torch.float32)
        self.min_score = float(self.thresholds.min())
        self.threads = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        self.workers = ThreadPoolExecutor(self.threads, "ioc-frames")
        # the detection head caches its anchors for the last input shape it saw: two threads
        # with frames of different shapes must not interleave forward passes
        self.forward_lock = threading.Lock()

    def __call__(self, blobs: Sequence[bytes]) -> list[FrameOutput | None]:
        """One output per encoded frame, in order; None for bytes that are not an image."""
        if torch.get_num_threads() != self.threads:
            # Ultralytics sets OMP_NUM_THREADS=1 on import and torch's threads to cores - 1
            # whenever it picks a device: the forward pass is to use every core
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            parts = self._on_device(blobs) if self.frames_on_device else self._on_host(blobs)
            return self._detect(len(blobs), parts)

    def geometry(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, ...]]:
        """The letterbox of a frame: its scaled (height, width) and the (left, right, top,
        bottom) grey padding up to the next multiple of the stride, as Ultralytics rounds."""
        ratio = min(self.image_size / height, self.image_size / width)
        new_h, new_w = max(round(height * ratio), 1), max(round(width * ratio), 1)
        pad_h = (self.image_size - new_h) % self.stride / 2
        pad_w = (self.image_size - new_w) % self.stride / 2
        padding = (round(pad_w - 0.1), round(pad_w + 0.1), round(pad_h - 0.1), round(pad_h + 0.1))
        return (new_h, new_w), padding

    def _on_host(self, blobs: Sequence[bytes]) -> list[Inputs]:
        frames = list(self.workers.map(self._prepare, blobs))
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, frame in enumerate(frames):
            if frame is not None:
                by_shape[frame.letterboxed.shape].append(index)
        parts = []
        for indices in by_shape.values():
            chosen = [frame for i in indices if (frame := frames[i]) is not None]
            batch = torch.from_numpy(np.stack([frame.letterboxed for frame in chosen]))
            parts.append(
                Inputs(
                    indices,
                    [frame.size for frame in chosen],
                    batch.to(self.device).permute(0, 3, 1, 2).to(self.dtype).div_(255),
                    torch.stack([frame.luma for frame in chosen]),
                    torch.stack([frame.hash_thumb for frame in chosen]),
                )
            )
        return parts

    def _prepare(self, blob: bytes) -> HostFrame | None:
        image = decode_on_cpu(blob)
        if image is None:
            return None
        height, width = image.shape[:2]
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        luma, hashed = thumbnails(torch.from_numpy(cv2.integral(grey, sdepth=cv2.CV_64F))[None])
        (new_h, new_w), (left, right, top, bottom) = self.geometry(height, width)
        if (new_h, new_w) != (height, width):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        letterboxed = cv2.copyMakeBorder(
            image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
        )
        return HostFrame(letterboxed, (height, width), luma[0], hashed[0])

    def _on_device(self, blobs: Sequence[bytes]) -> list[Inputs]:
        images = self._decode_on_device(blobs)
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            if image is not None:
                by_shape[image.shape].append(index)
        parts = []
        for (_, height, width), indices in by_shape.items():
            frames = torch.stack([image for i in indices if (image := images[i]) is not None])
            grey = torch.einsum(
                "c,nchw->nhw", torch.tensor(GREY, device=self.device), frames.float()
            ).round_()
            integral = F.pad(grey.double().cumsum(-1).cumsum(-2), (1, 0, 1, 0))
            (new_h, new_w), padding = self.geometry(height, width)
            batch = frames.to(self.dtype)
            if (new_h, new_w) != (height, width):
                batch = F.interpolate(batch, (new_h, new_w), mode="bilinear", align_corners=False)
            batch = F.pad(batch, padding, value=PAD_VALUE)
            sizes = [(height, width)] * len(indices)
            parts.append(Inputs(indices, sizes, batch.div_(255), *thumbnails(integral)))
        return parts

    def _decode_on_device(self, blobs: Sequence[bytes]) -> list[torch.Tensor | None]:
        """RGB uint8 (3, H, W) tensors on the device. On CUDA the JPEGs go to nvjpeg in one
        call; a batch it rejects (it gives no partial results) and other formats are decoded
        on the CPU, in threads, and moved over."""
        decoded: dict[int, torch.Tensor | None] = {}
        if self.device.type == "cuda":
            decoded.update(self._nvjpeg(blobs))
        rest = [i for i in range(len(blobs)) if i not in decoded]
        on_cpu = self.workers.map(decode_on_cpu, [blobs[i] for i in rest])
        for i, image in zip(rest, on_cpu, strict=True):
            if image is not None:
                decoded[i] = torch.from_numpy(image).permute(2, 0, 1).to(self.device)
        return [decoded.get(i) for i in range(len(blobs))]

    def _nvjpeg(self, blobs: Sequence[bytes]) -> dict[int, torch.Tensor]:
        jpegs = [i for i, blob in enumerate(blobs) if blob.startswith(JPEG_MAGIC)]
        if not jpegs:
            return {}
        try:
            images = decode_jpeg(
                [_as_tensor(blobs[i]) for i in jpegs], mode=ImageReadMode.RGB, device=self.device
            )
        except RuntimeError:
            log.debug("nvjpeg rejected a batch of %d JPEGs: decoding it on the CPU", len(jpegs))
            return {}
        return dict(zip(jpegs, images, strict=True))

    def _detect(self, count: int, parts: list[Inputs]) -> list[FrameOutput | None]:
        """One forward pass and NMS per model input shape, then one copy of the boxes to the
        host, where they go back to frame pixels and per-class minimum scores apply (small
        tensors: cheaper there than many device ops)."""
        by_input: dict[tuple[int, ...], list[Inputs]] = defaultdict(list)
        for part in parts:
            by_input[tuple(part.batch.shape[2:])].append(part)
        outputs: list[FrameOutput | None] = [None] * count
        for input_shape, group in by_input.items():
            inputs = torch.cat([part.batch for part in group])
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            with self.forward_lock:
                found = [
                    boxes
                    for chunk in inputs.split(self.forward_batch or len(inputs))
                    for boxes in non_max_suppression(
                        self.net(chunk), self.min_score, IOU, max_det=MAX_DET, end2end=self.end2end
                    )
                ]
            on_host = torch.cat([boxes[:, :6] for boxes in found]).float().cpu()
            per_frame = iter(on_host.split([len(boxes) for boxes in found]))
            for part in group:
                luma, hashed = part.luma.cpu(), part.hash_thumb.cpu()
                for k, (index, size) in enumerate(zip(part.indices, part.sizes, strict=True)):
                    boxes = next(per_frame)
                    kept = boxes[boxes[:, 4] >= self.thresholds[boxes[:, 5].long()]]
                    kept[:, :4] = scale_boxes(input_shape, kept[:, :4], size)
                    outputs[index] = FrameOutput(*size, kept, luma[k], hashed[k])
        return outputs


def decode_on_cpu(blob: bytes) -> np.ndarray | None:
    """An (H, W, 3) RGB uint8 image, or None when the bytes are not one. torchvision for JPEG,
    PNG and WebP (EXIF orientation applied, as OpenCV's `imread` does); OpenCV for the formats
    it lacks (BMP, TIFF)."""
    if not blob:
        return None
    try:
        image = decode_image(_as_tensor(blob), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except RuntimeError:
        bgr = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None or not bgr.size else np.ascontiguousarray(bgr[..., ::-1])
    if image.ndim != 3:  # an animated image: not a camera frame
        return None
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())  # JPEGs decode as HWC: no copy


def _as_tensor(blob: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8)  # a writable copy, as torch asks


def thumbnails(integral: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H+1, W+1) summed-area tables of grey frames (float64, `integral[y, x]`: the sum of the
    pixels above and left of (y, x)) → the (N, 64, 64) and (N, 8, 9) thumbnails, each pixel the
    mean of the frame area it covers, partial pixels weighted by overlap (OpenCV's INTER_AREA
    when shrinking), rounded. A few small ops whatever the frame size."""
    height, width = integral.shape[-2] - 1, integral.shape[-1] - 1
    out = []
    for rows, columns in (LUMA_SIZE, HASH_SIZE):
        corners = _at_edges(_at_edges(integral, columns, -1), rows, -2)
        sums = corners.diff(dim=-1).diff(dim=-2)
        out.append((sums * (rows * columns / (height * width))).round_().float())
    return out[0], out[1]


def _at_edges(integral: torch.Tensor, count: int, dim: int) -> torch.Tensor:
    """The table at the `count + 1` edges of equal spans along `dim`; between two whole pixels
    it is linear, so fractional edges interpolate exactly."""
    length = integral.shape[dim] - 1
    edges = torch.linspace(0, length, count + 1, dtype=torch.float64, device=integral.device)
    below = edges.floor().long().clamp_(max=length - 1)
    weight = (edges - below).view(-1, *[1] * (-dim - 1))
    return (
        integral.index_select(dim, below) * (1 - weight)
        + integral.index_select(dim, below + 1) * weight
    )
