"""The ground truth a replay is scored against: a Cityscapes-layout split's panoptic json and
PNGs (cityscapesscripts' createPanopticImgs) and its labelIds PNGs."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pisr_ros import cityscapes_layout as layout
from pisr_ros.errors import UsageError
from pisr_ros.evaluation import panoptic_quality as pq


@dataclass
class GroundTruth:
    """A Cityscapes-layout split's panoptic ground truth (gtFine/cityscapes_panoptic_<split>.json
    and PNGs, from cityscapesscripts' createPanopticImgs) and labelIds PNGs (gtFine/<split>)."""

    root: Path
    split: str
    json_path: Path
    folder: Path
    json: dict
    annotations: dict[str, dict]
    categories: dict[int, dict]

    def label_ids_png(self, image_id: str) -> Path:
        return layout.image_paths(self.root, self.split, image_id).label_ids

    def left_img(self, image_id: str) -> Path:
        return layout.image_paths(self.root, self.split, image_id).left_img

    def check_labelled(self, image_ids: Iterable[str], where: str = "the bag") -> None:
        """UsageError unless every image id has panoptic and labelIds ground truth."""
        ids = list(image_ids)
        missing = [i for i in ids if i not in self.annotations]
        if missing:
            raise UsageError(
                f"{len(missing)} of the {len(ids)} images of {where} have no label in {self.json_path} "
                f"(e.g. {', '.join(missing[:3])}); point --gt at the Cityscapes root those images come from "
                f"(and --split at their split)")
        no_sem = [i for i in ids if not _is_cityscapes_id(i) or not self.label_ids_png(i).is_file()]
        if no_sem:
            example = self.label_ids_png(no_sem[0]) if _is_cityscapes_id(no_sem[0]) else no_sem[0]
            raise UsageError(f"{len(no_sem)} of the {len(ids)} images of {where} have no labelIds ground truth "
                             f"(e.g. {example}); expected gtFine/{self.split}/<city>/<id>{layout.LABEL_IDS_SUFFIX}")


def _is_cityscapes_id(image_id: str) -> bool:
    try:
        layout.parse_image_id(image_id)
    except ValueError:
        return False
    return True


def load_ground_truth(root: str | Path, split: str = "val") -> GroundTruth:
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--gt {root}: no such directory (a Cityscapes root with gtFine/)")
    json_path = layout.panoptic_json(root, split)
    folder = layout.panoptic_dir(root, split)
    if not json_path.is_file():
        raise UsageError(f"--gt {root}: no {json_path.relative_to(root)}; make it with cityscapesscripts' "
                         f"createPanopticImgs (csCreatePanopticImgs --set-names {split}), or check --split")
    if not folder.is_dir():
        raise UsageError(f"--gt {root}: no {folder.relative_to(root)}/ (the panoptic PNGs beside {json_path.name})")
    doc = pq.load_json(str(json_path), "ground-truth panoptic JSON")
    cats = pq.categories_of(doc, str(json_path))
    anns = doc.get("annotations")
    if not isinstance(anns, list):
        raise UsageError(f"{json_path}: no 'annotations' list")
    by_id = {}
    for ann in anns:
        if not isinstance(ann, dict) or "image_id" not in ann or "file_name" not in ann:
            raise UsageError(f"{json_path}: an annotation lacks 'image_id' or 'file_name'")
        by_id[str(ann["image_id"])] = ann
    return GroundTruth(root, split, json_path, folder, doc, by_id, cats)
