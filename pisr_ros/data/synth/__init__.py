"""Procedural street scenes, written in the exact Cityscapes layout.

Each scene is a straight street seen from a car: a pinhole camera at a random height, focal
length, horizon and roll looks along a road with lane markings, curbs, sidewalks, building rows
with windows, walls, fences, trees, terrain, poles, signs and traffic lights, and places cars,
trucks, buses, the odd tram, persons, riders, bicycles and motorcycles on the ground plane. Every
shape is built in metres and projected, so sizes and heights follow perspective, and everything is
painted far to near, so nearer things occlude farther ones exactly as the labels say.

Ground truth is painted with the image, polygon by polygon, into a labelIds map and an instanceIds
map (``labelId * 1000 + k`` for things, ``k`` from 0 per class and image as in Cityscapes' own
``json2instanceImg``; plain labelId elsewhere). The panoptic PNGs and json then come from
cityscapesscripts' own converter, so they are exactly what the benchmark tools expect.

A scene depends only on (seed, split, index): :func:`scene_rng` seeds one generator per image, so
any number of worker processes writes byte-identical files.

The package, one module per job: ``split`` (cities, image ids, the per-scene seed), ``street``
(a scene's layout and painting order), ``camera``, ``canvas``, ``shapes``, ``colours``,
``labels``, what is drawn (``ground``, ``rows``, ``plants``, ``furniture``, ``vehicles``,
``people``, ``void``), ``optics`` (the camera's side of the picture), ``files`` (one scene's
files), ``panoptic_gt`` (the converter) and ``generator`` (a whole split). Import from here.
"""
from pisr_ros.data.synth.camera import Camera
from pisr_ros.data.synth.canvas import Canvas
from pisr_ros.data.synth.files import colour_labels, make_contact_sheet, panoptic_colouring, render_scene, write_scene
from pisr_ros.data.synth.generator import CONTACT_SHEET_SCENES, generate, parse_size
from pisr_ros.data.synth.panoptic_gt import convert_panoptic
from pisr_ros.data.synth.split import CITIES, DEFAULT_SIZE, FRAME, image_id_of, scene_rng
from pisr_ros.data.synth.street import Street

__all__ = [
    "CITIES", "CONTACT_SHEET_SCENES", "DEFAULT_SIZE", "FRAME", "Camera", "Canvas", "Street", "colour_labels",
    "convert_panoptic", "generate", "image_id_of", "make_contact_sheet", "panoptic_colouring", "parse_size",
    "render_scene", "scene_rng", "write_scene",
]
