"""DICOM images: display-ready pixels via pydicom, and the image encoder.

Pixels go through the modality LUT (rescale slope / intercept), the VOI LUT or window
centre / width, MONOCHROME1 inversion, the middle frame of a multi-frame object, then a
resize to the encoder's square input. The encoder is a ``transformers`` ResNet: loaded from a
local directory when one is configured, otherwise a small one Vigil trains itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from torch import nn
from transformers import ResNetConfig, ResNetModel

from pipeline.embed.records import RecordError, files_sha256


def image_sha256(path: Path) -> str:
    if not path.exists():
        raise RecordError("DICOM file not found")
    return files_sha256([path])


def read_image(path: Path, size: int = 64) -> np.ndarray:
    """A DICOM image as float32 ``(1, size, size)`` in [0, 1], bright = dense."""
    if not path.exists():
        raise RecordError("DICOM file not found")
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError) as error:
        raise RecordError(f"not a readable DICOM file ({type(error).__name__})") from error
    kind = getattr(ds, "SOPClassUID", None)
    known_non_image = kind is not None and kind.name != str(kind) and "Image Storage" not in kind.name
    if "PixelData" not in ds or known_non_image:  # e.g. segmentations, waveforms, structured reports
        raise RecordError(f"DICOM object holds no image ({kind.name if kind else 'unknown SOP class'})")
    try:
        pixels = ds.pixel_array
    except Exception as error:  # missing decoder plugins raise RuntimeError / NotImplementedError
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise RecordError(f"cannot decode pixel data ({syntax.name if syntax else 'unknown transfer syntax'}): "
                          f"{type(error).__name__}") from error
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    if pixels.ndim == 3:  # colour: luminance
        pixels = pixels[..., :3].mean(axis=-1)
    image = apply_modality_lut(pixels, ds).astype(np.float64)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        image = apply_voi_lut(image, ds).astype(np.float64)
    low, high = np.nanpercentile(image, [0.5, 99.5])
    if not np.isfinite([low, high]).all() or high - low < 1e-6:
        raise RecordError("image has no contrast (constant pixels)")
    image = np.clip((image - low) / (high - low), 0, 1)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        image = 1.0 - image
    tensor = torch.from_numpy(image.astype(np.float32))[None, None]
    return F.interpolate(tensor, size=(size, size), mode="area")[0].numpy()


class ImageEncoder(nn.Module):
    """A ``transformers`` ResNet backbone plus a projection to the embedding size."""

    def __init__(self, backbone: ResNetModel, embedding_dim: int = 32):
        super().__init__()
        self.backbone = backbone
        self.project = nn.Linear(backbone.config.hidden_sizes[-1], embedding_dim)
        self.head = nn.Linear(embedding_dim, 1)
        self.config = {"embedding_dim": embedding_dim}

    @classmethod
    def small(cls, embedding_dim: int = 32) -> ImageEncoder:
        config = ResNetConfig(num_channels=1, embedding_size=16, hidden_sizes=[16, 32, 64],
                              depths=[1, 1, 1], layer_type="basic", downsample_in_first_stage=True)
        return cls(ResNetModel(config), embedding_dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone(pixel_values=x).pooler_output.flatten(1)
        return self.project(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.embed(x))).squeeze(-1)
