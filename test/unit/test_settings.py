"""Settings declared once (pisr_ros.settings): per-device defaults, values stored in a model,
what a user gives, and everything derived from them (config/panoptic.yaml, flags, parameters)."""
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pisr_ros import settings
from pisr_ros.postprocess.panoptic_deeplab import PanopticDeepLabSettings
from pisr_ros.settings import setting

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Toy:
    threshold: float = setting(0.5, "Minimum score.", range=(0.0, 1.0))
    kernel: int = setting(7, "Window (odd).", range=(1, 31), odd=True, cpu=3)
    fixed: int = 4  # not a setting


def test_table_defaults_per_device_and_the_order_of_sources():
    assert [s.name for s in settings.table(Toy)] == ["threshold", "kernel"]
    assert settings.for_device(Toy, "cpu") == Toy(0.5, 3)
    assert settings.for_device(Toy, "cuda:1") == Toy(0.5, 7)
    stored = {"cpu": {"threshold": 0.25, "kernel": 5}, "cuda": {"kernel": 9}}
    assert settings.resolve(Toy, "cpu", stored) == Toy(0.25, 5)
    assert settings.resolve(Toy, "cuda", stored) == Toy(0.5, 9)
    # Given values win; None is "not given"; 0 is a value.
    assert settings.resolve(Toy, "cpu", stored, threshold=0, kernel=None) == Toy(0.0, 5)


def test_refused_values_name_the_setting_and_the_source():
    with pytest.raises(ValueError, match="given: kernel must be odd"):
        settings.resolve(Toy, "cpu", kernel=4)
    with pytest.raises(ValueError, match=r"stored in the model: threshold must be in \[0.0, 1.0\]"):
        settings.resolve(Toy, "cpu", {"cpu": {"threshold": 2.0}})
    with pytest.raises(ValueError, match="unknown setting 'speed'"):
        settings.resolve(Toy, "cpu", {"cpu": {"speed": 1}})


def test_panoptic_deeplab_settings_refuse_what_they_declare():
    with pytest.raises(ValueError, match="nms_kernel must be odd"):
        PanopticDeepLabSettings(nms_kernel=4)
    with pytest.raises(ValueError, match="top_k must be in"):
        PanopticDeepLabSettings(top_k=0)


def _yaml_settings_lines():
    text = (ROOT / "config" / "panoptic.yaml").read_text()
    return re.findall(r"^\s*# (\w+): (\S+)\s+# (.*)$", text, flags=re.M)


def test_config_yaml_lists_every_setting_at_its_cpu_default_commented_out():
    """config/panoptic.yaml names each Panoptic-DeepLab setting once, with the CPU default, the
    description and other devices' defaults, as a comment: set there, it would override the
    values tuned into the model."""
    lines = _yaml_settings_lines()
    table = settings.table(PanopticDeepLabSettings)
    assert [name for name, _, _ in lines] == [s.name for s in table]
    for (name, value, comment), item in zip(lines, table):
        assert yaml.safe_load(value) == item.default_for("cpu"), name
        others = "".join(f" ({d}: {yaml.safe_dump(v).split(chr(10))[0]})" for d, v in
                         ((d, item.default_for(d)) for d in settings.DEVICE_TYPES if d != "cpu")
                         if v != item.default_for("cpu"))
        assert comment == item.description + others, name
    params = yaml.safe_load((ROOT / "config" / "panoptic.yaml").read_text())["/**"]["ros__parameters"]
    assert not set(params) & {s.name for s in table}


def test_config_yaml_values_are_the_node_defaults():
    from pisr_ros.inference.model_files import DEFAULT_MODEL
    from pisr_ros.ros.panoptic_params import PARAMS

    params = yaml.safe_load((ROOT / "config" / "panoptic.yaml").read_text())["/**"]["ros__parameters"]
    assert params == PARAMS.defaults()
    assert params["model"] == DEFAULT_MODEL


SETTINGS_CALLS = {"PanopticDeepLabSettings", "replace", "resolve", "model_settings", "for_device"}


def _values_given_in_code(source: str, name: str) -> bool:
    """Whether ``source`` (code, not its strings) gives the setting ``name`` a literal value:
    ``name=<literal>`` in a call that builds or changes settings, or ``name = <literal>`` /
    ``name: T = <literal>``. The ``setting(...)`` declarations themselves do not count."""
    import ast

    tree = ast.parse(source)
    # PISRSpec's nms_kernel and top_k are other things of the same names: the network's own
    # choice of its top-K centers, part of the model spec, not post-processing settings.
    skipped = {id(n) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name == "PISRSpec"
               for n in ast.walk(c)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Call):
            func = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if func in SETTINGS_CALLS and any(k.arg == name and isinstance(k.value, ast.Constant)
                                              for k in node.keywords):
                return True
        targets = ([node.target] if isinstance(node, ast.AnnAssign) else
                   node.targets if isinstance(node, ast.Assign) else [])
        if isinstance(getattr(node, "value", None), ast.Constant) and any(
                isinstance(t, ast.Name) and t.id == name for t in targets):
            return True
    return False


def test_each_post_processing_default_is_written_once_in_the_library():
    """The settings' defaults appear in their declaration (``setting(...)``) and nowhere else in
    pisr_ros/'s code: no module passes or assigns its own value."""
    for item in settings.table(PanopticDeepLabSettings):
        hits = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "pisr_ros").rglob("*.py"))
                if _values_given_in_code(p.read_text(), item.name)]
        assert hits == [], (item.name, hits)
    # The check finds what it looks for.
    assert _values_given_in_code("cfg = replace(cfg, nms_kernel=7)", "nms_kernel")
    assert _values_given_in_code("nms_kernel: int = 3", "nms_kernel")
    assert not _values_given_in_code("nms_kernel: int = setting(3, 'x')", "nms_kernel")
