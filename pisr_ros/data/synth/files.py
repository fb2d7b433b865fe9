"""One scene's files: its image and gtFine label PNGs in the Cityscapes layout, and the pictures
of its ground truth (gtFine_color, the thumbnails of the contact sheet)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pisr_ros import cityscapes_layout as layout
from pisr_ros.data.synth.split import DEFAULT_SIZE, image_id_of, scene_rng
from pisr_ros.data.synth.street import Street
from pisr_ros.taxonomy import LABEL_COLORS


def render_scene(seed: int, split: str, index: int, size=DEFAULT_SIZE):
    """(rgb, labelIds, instanceIds) of one scene; the same arguments always give the same arrays."""
    height, width = size
    street = Street(height, width, scene_rng(seed, split, index))
    rgb = street.render()
    return rgb, street.cv.labels, street.cv.instances


def colour_labels(label_ids: np.ndarray) -> np.ndarray:
    """gtFine_color: RGBA, label table colours, opaque (as Cityscapes writes it)."""
    rgba = np.empty(label_ids.shape + (4,), np.uint8)
    rgba[..., :3] = LABEL_COLORS[label_ids]
    rgba[..., 3] = 255
    return rgba


def panoptic_colouring(label_ids: np.ndarray, instance_ids: np.ndarray) -> np.ndarray:
    """A picture of the ground truth: class colours, each thing instance shaded and outlined."""
    rgb = LABEL_COLORS[label_ids].astype(np.float32)
    thing = instance_ids >= 1000
    k = (instance_ids % 1000).astype(np.float32)
    shade = 0.55 + 0.45 * ((k * 0.618034) % 1.0)
    rgb[thing] = rgb[thing] * shade[thing, None] + (1 - shade[thing, None]) * 90
    ids = instance_ids.astype(np.int32)
    edge = np.zeros(ids.shape, bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    near_thing = thing.copy()
    near_thing[:, 1:] |= thing[:, :-1]
    near_thing[1:, :] |= thing[:-1, :]
    rgb[edge & near_thing] = 255
    return rgb.astype(np.uint8)


def _thumbnail(rgb, label_ids, instance_ids, width):
    h, w = label_ids.shape
    size = (width, max(1, round(h * width / w)))
    img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    lab = cv2.resize(label_ids, size, interpolation=cv2.INTER_NEAREST)
    ins = cv2.resize(instance_ids, size, interpolation=cv2.INTER_NEAREST)
    return img, panoptic_colouring(lab, ins)


def write_png(path: Path, array: np.ndarray):
    if not cv2.imwrite(str(path), array):
        raise OSError(f"could not write {path}")


def write_scene(root: str | Path, split: str, index: int, seed: int, size=DEFAULT_SIZE, thumb_width: int = 0):
    """Renders scene ``index`` and writes its image and gtFine files; returns a thumbnail pair when asked."""
    rgb, labels, instances = render_scene(seed, split, index, size)
    paths = layout.image_paths(root, split, image_id_of(split, index))
    for p in (paths.left_img, paths.label_ids):
        p.parent.mkdir(parents=True, exist_ok=True)
    write_png(paths.left_img, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    write_png(paths.label_ids, labels)
    write_png(paths.instance_ids, instances)
    write_png(paths.color, cv2.cvtColor(colour_labels(labels), cv2.COLOR_RGBA2BGRA))
    return _thumbnail(rgb, labels, instances, thumb_width) if thumb_width else None


def make_contact_sheet(pairs, columns: int = 4) -> np.ndarray:
    """A grid of (image id, image, panoptic colouring) thumbnails: image above, labels below."""
    if not pairs:
        raise ValueError("no scenes for the contact sheet")
    th, tw = pairs[0][1].shape[:2]
    pad = 6
    cell_h, cell_w = 2 * th + 3 * pad, tw + pad
    rows = -(-len(pairs) // columns)
    sheet = np.full((rows * cell_h + pad, columns * cell_w + pad, 3), 255, np.uint8)
    for i, (name, img, pan) in enumerate(pairs):
        y, x = (i // columns) * cell_h + pad, (i % columns) * cell_w + pad
        sheet[y:y + th, x:x + tw] = img
        sheet[y + th + pad // 2:y + 2 * th + pad // 2, x:x + tw] = pan
        (tw_text, th_text), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        sheet[y:y + th_text + 6, x:x + tw_text + 6] //= 3  # a dark tab keeps the name legible
        cv2.putText(sheet, name, (x + 3, y + th_text + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return sheet
