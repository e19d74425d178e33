"""The ``inference`` section of params.yaml, shared by the infer and evaluate stages."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_lib.params import Params, one_of, positive


@dataclass(frozen=True)
class InferenceSettings:
    mode: str  # "whole" or "sliding"
    crop_size: int | None
    stride: int | None
    flip: bool

    @classmethod
    def from_params(cls, params: Params) -> "InferenceSettings":
        mode = params.get("inference.mode", str, one_of("whole", "sliding"))
        crop = params.get("inference.crop_size", int, positive, default=None)
        if mode == "sliding" and crop is None:
            crop = params.get("train.crop_size", int, positive)
        return cls(mode=mode, crop_size=crop, stride=params.get("inference.stride", int, positive, default=None),
                   flip=params.get("inference.flip", bool))

    def as_kwargs(self) -> dict:
        return {"mode": self.mode, "crop_size": self.crop_size, "stride": self.stride, "flip": self.flip}
