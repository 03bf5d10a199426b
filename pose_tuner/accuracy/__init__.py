"""Accuracy layer: COCO keypoint data (real or synthetic), top-down crops,
output decoding and OKS AP / PCK evaluation of any backend's ``predict``.

>>> from pose_tuner.accuracy import load_coco_keypoints, evaluate, IMAGENET_MEAN, IMAGENET_STD
>>> people = load_coco_keypoints("person_keypoints.json", "images/")
>>> res = evaluate(vm.run, people, input_size=(256, 192))      # doctest: +SKIP
>>> res.ap, res.pck                                             # doctest: +SKIP
"""

from pose_tuner.accuracy.dataset import (COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, COCO_SKELETON, IMAGENET_MEAN,
                      IMAGENET_STD, CocoGroundTruth, PersonInstance, affine_points,
                      box_to_center_scale, crop, get_affine_transform, invert_affine,
                      load_coco_keypoints, load_image, preprocess)
from pose_tuner.accuracy.decode import (Decoder, HeatmapDecoder, SimCCDecoder, get_decoder, output_shapes,
                     render_gaussian_heatmaps, to_numpy)
from pose_tuner.accuracy.evaluate import AccuracyResult, CropMeta, crop_instance, evaluate, pck_thresholds
from pose_tuner.accuracy.synthetic import generate

__all__ = [
    "COCO_FLIP_PAIRS", "COCO_KEYPOINT_NAMES", "COCO_SKELETON", "IMAGENET_MEAN", "IMAGENET_STD",
    "CocoGroundTruth", "PersonInstance", "affine_points", "box_to_center_scale", "crop",
    "get_affine_transform", "invert_affine", "load_coco_keypoints", "load_image", "preprocess",
    "Decoder", "HeatmapDecoder", "SimCCDecoder", "get_decoder", "output_shapes",
    "render_gaussian_heatmaps", "to_numpy",
    "AccuracyResult", "CropMeta", "crop_instance", "evaluate", "pck_thresholds",
    "generate",
]
