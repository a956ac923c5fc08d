"""Vision data: readers of the public image-text, point-cloud and RGB-D datasets, seeded transforms, VQA accuracy.

Readers (each reads the official layout in place; nothing downloads):

* :mod:`.readers_captions` -- :class:`CocoCaptions`, :class:`NoCaps`, :class:`ConceptualCaptions`,
  :class:`Img2DatasetCaptions` (img2dataset's ``files`` output), :class:`VQAv2`;
* :mod:`.readers_points` -- :class:`ModelNet40` (txt), :class:`ModelNet40H5`, :class:`ScanObjectNN`,
  :class:`ShapeNet55`;
* :mod:`.readers_rgbd` -- :class:`Cityscapes`, :class:`FreiburgForest`, :class:`SUNRGBD`, :class:`ScanNet2D`.

Transforms (``transform(sample, generator) -> sample``, applied by :class:`TransformedDataset`):
:mod:`.transforms` for images and depth (torchvision v2, jet, HHA) and :mod:`.transforms_points` for point clouds.
:mod:`.vqa_eval` holds the official VQA accuracy.

Synthetic products of the procedural world (:mod:`.objects`, :mod:`.world`, :mod:`.render`):
:mod:`.synth_captions` (captioned images and VQA in the COCO / VQAv2 layouts), :mod:`.synth_scenes` (RGB-D
scenes in the Cityscapes layout) and :mod:`.synth_points` (point clouds in the ShapeNet-55, ModelNet40 h5 and
ScanObjectNN layouts). :mod:`.show` draws any of these layouts as PNG grids (``mmseq data show``).
"""

from mmseq.data.vision.readers_captions import (CocoCaptions, ConceptualCaptions, Img2DatasetCaptions,
                                                  NoCaps, VQAv2)
from mmseq.data.vision.readers_points import ModelNet40, ModelNet40H5, ScanObjectNN, ShapeNet55
from mmseq.data.vision.readers_rgbd import SUNRGBD, Cityscapes, FreiburgForest, ScanNet2D
from mmseq.data.vision.synth_captions import build_captions, read_captions, read_vqa
from mmseq.data.vision.synth_points import build_points
from mmseq.data.vision.synth_scenes import build_scenes, read_scenes
from mmseq.data.vision.transforms import Compose, TransformedDataset, item_generator
from mmseq.data.vision.vqa_eval import normalize_answer, vqa_accuracy, vqa_evaluate

__all__ = [
    # readers
    "CocoCaptions", "NoCaps", "ConceptualCaptions", "Img2DatasetCaptions", "VQAv2", "ModelNet40", "ModelNet40H5",
    "ScanObjectNN", "ShapeNet55", "Cityscapes", "FreiburgForest", "SUNRGBD", "ScanNet2D",
    # transforms and evaluation
    "Compose", "TransformedDataset", "item_generator", "normalize_answer", "vqa_accuracy", "vqa_evaluate",
    # synthetic products (mmseq data synth captions / scenes / points)
    "build_captions", "read_captions", "read_vqa", "build_scenes", "read_scenes", "build_points",
]  # fmt: skip
