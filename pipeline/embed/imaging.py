"""DICOM images: display-ready pixels via pydicom, and the image encoder.

Pixels go through the modality LUT (rescale slope / intercept), the VOI LUT or window
centre / width, MONOCHROME1 inversion, the middle frame of a multi-frame object, then a
resize to the encoder's square input. The encoder is a ``transformers`` vision backbone: a
checkpoint from a local directory when the spec names one (``backbone``), otherwise a small
ResNet Vigil trains itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import UID
from torch import nn
from transformers import ResNetConfig, ResNetModel
from transformers.utils import logging as transformers_logging

from pipeline.embed.records import RecordError, files_sha256, mask_path, read_dicom, sop_class_name
from pipeline.filestore import FileStore

transformers_logging.disable_progress_bar()  # its weight-loading bar lands in task logs as errors

# Names how files become the encoder's input; part of the encoder id, so changing it re-embeds.
IMAGE_CONDITIONING = "reduce-then-window"


def image_sha256(path: Path, store: FileStore | None = None) -> str:
    """The content of an image record: its DICOM file and, where one lies beside it, its tumour
    mask (``<file>.mask.nrrd``, read by radiomics), so a corrected mask is measured again."""
    mask = mask_path(path)
    if store is not None:
        files = [store.regular(path, "DICOM file")]
        return files_sha256(files + ([store.regular(mask, "tumour mask")] if mask.exists() else []), store.max_bytes)
    if not path.is_file():
        raise RecordError("DICOM file not found")
    return files_sha256([path] + ([mask] if mask.is_file() else []))


def read_image(path: Path, size: int = 64) -> np.ndarray:
    """A DICOM image as float32 ``(1, size, size)`` in [0, 1], bright = dense.

    The image is reduced to the encoder's size right after the modality LUT (a linear rescale
    or a table on stored values), so the window and the contrast stretch work on ``size``
    squared pixels, not millions: a 2k computed radiograph takes ~10 ms after decoding instead
    of ~200 ms. Averaging before the window differs from windowing first only where the window
    clips inside one output pixel (the tests bound the difference).
    """
    if not path.is_file():
        raise RecordError("DICOM file not found")
    try:
        ds = read_dicom(path)
    except (InvalidDicomError, EOFError, OSError, ValueError) as error:
        raise RecordError(f"not a readable DICOM file ({type(error).__name__})") from error
    kind = sop_class_name(ds)
    if "PixelData" not in ds or (kind is not None and "Image Storage" not in kind):  # SEG, waveforms, SR
        raise RecordError(f"DICOM object holds no image ({kind or 'unknown SOP class'})")
    try:
        pixels = ds.pixel_array
    except Exception as error:  # missing decoder plugins raise RuntimeError / NotImplementedError
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        known = isinstance(syntax, UID) and syntax.is_transfer_syntax and syntax.name != str(syntax)
        raise RecordError(f"cannot decode pixel data ({syntax.name if known else 'unknown transfer syntax'}): "
                          f"{type(error).__name__}") from error  # a name from the registry, never the file's text
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    if pixels.ndim == 3:  # colour: luminance
        pixels = pixels[..., :3].mean(axis=-1)
    widths = ds.get("WindowWidth")
    if widths is not None and not all(float(w) > 0 for w in (widths if isinstance(widths, MultiValue) else [widths])):
        raise RecordError("DICOM window width is not positive")
    image = apply_modality_lut(pixels, ds)
    if "VOILUTSequence" in ds:  # a lookup table indexes stored values: on the full grid
        image = apply_voi_lut(image, ds)
    image = F.interpolate(torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None], size=(size, size),
                          mode="area")[0, 0].numpy()
    if "WindowCenter" in ds and "VOILUTSequence" not in ds:
        image = apply_voi_lut(image, ds).astype(np.float32)  # windowing: per-pixel arithmetic, on the reduced image
    low, high = np.nanpercentile(image, [0.5, 99.5])
    if not np.isfinite([low, high]).all() or high - low < 1e-6:
        raise RecordError("image has no contrast (constant pixels)")
    image = np.clip((image - low) / (high - low), 0, 1, dtype=np.float32)
    if not np.isfinite(image).all():
        raise RecordError("image pixels are not finite after windowing")
    if ds.get("PhotometricInterpretation", "") == "MONOCHROME1":
        image = 1.0 - image
    return image[None]


class ImageEncoder(nn.Module):
    """A ``transformers`` vision backbone plus a projection to the embedding size.

    The backbone is a small ResNet Vigil trains itself, or any checkpoint in a local directory
    that ``AutoModel`` loads and that returns a pooled output (ResNet, CLIP vision, DINOv2, ...):
    its weights are then frozen and only the projection learns. A grey image is repeated over the
    backbone's colour channels and normalised with the checkpoint's image mean and std.
    """

    def __init__(self, backbone: nn.Module, embedding_dim: int = 32, size: int = 64, channels: int = 1,
                 mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        self.backbone = backbone
        self.channels = channels
        self.register_buffer("mean", torch.tensor(mean or [0.0] * channels).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std or [1.0] * channels).view(1, channels, 1, 1))
        with torch.no_grad():
            width = self._pooled(torch.zeros(1, 1, size, size)).shape[1]
        self.project = nn.Linear(width, embedding_dim)
        self.head = nn.Linear(embedding_dim, 1)
        self.config = {"embedding_dim": embedding_dim}

    @classmethod
    def small(cls, embedding_dim: int = 32, size: int = 64) -> ImageEncoder:
        config = ResNetConfig(num_channels=1, embedding_size=16, hidden_sizes=[16, 32, 64],
                              depths=[1, 1, 1], layer_type="basic", downsample_in_first_stage=True)
        return cls(ResNetModel(config), embedding_dim, size)

    @classmethod
    def pretrained(cls, source: str, embedding_dim: int = 32, size: int = 224,
                   shared_space: bool = False) -> ImageEncoder:
        """A frozen backbone from a local checkpoint directory (or hub id where it is reachable);
        with ``shared_space``, a CLIP checkpoint's image tower and projection as they are
        (:class:`SharedSpaceImageEncoder`)."""
        from transformers import AutoModel

        backbone = AutoModel.from_pretrained(source)
        if shared_space:
            if getattr(backbone.config, "model_type", None) != "clip":
                raise ValueError(f"shared_space needs a CLIP checkpoint (image and text towers); {source} is a "
                                 f"{getattr(backbone.config, 'model_type', 'unknown')} model")
            stats = _image_stats(source)
            return SharedSpaceImageEncoder(backbone.eval(), size, stats.get("image_mean"), stats.get("image_std"))
        if hasattr(backbone, "vision_model") and not hasattr(backbone.config, "num_channels"):
            backbone = backbone.vision_model  # a full CLIP checkpoint: its image tower
        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
        channels = int(getattr(backbone.config, "num_channels", 3))
        stats = _image_stats(source)
        return cls(backbone.eval(), embedding_dim, size, channels, stats.get("image_mean"), stats.get("image_std"))

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, self.channels, -1, -1) - self.mean) / self.std
        return self.backbone(pixel_values=x).pooler_output.flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self._pooled(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(x))).squeeze(-1)


def _image_stats(source: str) -> dict:
    """A checkpoint's image mean and std (its ``preprocessor_config.json``), if it has them."""
    import json

    processor = Path(source) / "preprocessor_config.json"
    return json.loads(processor.read_text()) if processor.exists() else {}


class SharedSpaceImageEncoder(ImageEncoder):
    """A CLIP checkpoint's image tower and projection, frozen and used as they are: its vectors
    live in the space its text tower puts text in (:class:`~pipeline.embed.text.TextEncoder` on
    the same checkpoint), as the liver paper's CLIP-style model embeds ultrasound and clinical
    text. Nothing here is trained, so the training run does not pre-train it."""

    shared_space = True

    def __init__(self, clip: nn.Module, size: int, mean: list[float] | None, std: list[float] | None):
        for parameter in clip.parameters():
            parameter.requires_grad_(False)
        channels = int(clip.config.vision_config.num_channels)
        super().__init__(clip, int(clip.config.projection_dim), size, channels, mean, std)
        self.project = nn.Identity()

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, self.channels, -1, -1) - self.mean) / self.std
        features = self.backbone.get_image_features(pixel_values=x)
        return features if isinstance(features, torch.Tensor) else features.pooler_output
