"""The synthetic scenes' label space (Cityscapes train ids) and the long tail their pixel shares follow."""

from __future__ import annotations

import numpy as np

from pipeline_lib.data.classes import CITYSCAPES

_ID = {name: index for index, name in enumerate(CITYSCAPES.names)}
ROAD, SIDEWALK, BUILDING, WALL, FENCE = (_ID[n] for n in ("road", "sidewalk", "building", "wall", "fence"))
POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = (_ID[n] for n in ("pole", "traffic light", "traffic sign"))
VEGETATION, TERRAIN, SKY = (_ID[n] for n in ("vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN = (_ID[n] for n in ("person", "rider", "car", "truck", "bus", "train"))
MOTORCYCLE, BICYCLE = _ID["motorcycle"], _ID["bicycle"]
IGNORE = CITYSCAPES.ignore_index

# Shares of the valid pixels of the Cityscapes fine train set, in percent, in train-id order.
CITYSCAPES_SHARES_PERCENT = (36.9, 6.1, 22.8, 0.66, 0.88, 1.23, 0.21, 0.55, 15.9, 1.16, 4.0, 1.22, 0.13,
                             7.0, 0.27, 0.23, 0.23, 0.10, 0.41)
TARGET_SHARES = np.asarray(CITYSCAPES_SHARES_PERCENT) / sum(CITYSCAPES_SHARES_PERCENT)
