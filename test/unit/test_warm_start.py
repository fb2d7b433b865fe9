"""A PISR model warm-started from a base model predicts exactly what the base predicts."""
import pytest
import torch

from pisr_ros.models.spec import build_model, load_spec
from pisr_ros.models.warm_start import warm_start


@pytest.fixture(scope="module")
def base_and_pisr():
    torch.manual_seed(0)
    base = build_model(load_spec("config/models/pd_light_base.yaml"))
    # Non-trivial BN statistics, so that copying them (or not) shows in the outputs.
    base.train()
    with torch.no_grad():
        for _ in range(2):
            base(torch.randn(2, 3, 64, 128))
    base.eval()
    pisr = build_model(load_spec("config/models/pd_light_pisr.yaml"))
    return base, pisr


@pytest.fixture(scope="module")
def base_model(base_and_pisr):
    return base_and_pisr[0]


def assert_same_predictions(base, model, x):
    """``model`` (put in eval mode) predicts what ``base`` predicts for ``x``; base's outputs."""
    model.eval()
    with torch.no_grad():
        a, b = base(x), model(x)
    for key in ("semantic", "center", "offset"):
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-5)
    return a


def test_warm_started_pisr_predicts_what_the_base_predicts(base_and_pisr):
    base, pisr = base_and_pisr
    report = warm_start(pisr, base.state_dict())
    assert report.widened and report.copied
    assert all(n.startswith("pisr.") for n in report.fresh)
    x = torch.randn(1, 3, 128, 256)
    a = assert_same_predictions(base, pisr, x)
    # ...and PISR is wired in: its output reaches the final heads once their F_pan columns move.
    with torch.no_grad():
        f_pan_columns = slice(pisr.spec.semantic_decoder.channels, None)
        pisr.final_semantic_head[0][1][0].weight[:, f_pan_columns].add_(0.1)
        assert not torch.allclose(pisr(x)["semantic"], a["semantic"], atol=1e-3)


def test_warm_start_refuses_a_base_of_another_architecture(base_and_pisr):
    _, pisr = base_and_pisr
    other = build_model(load_spec("config/models/pd_r50_pisr.yaml"))
    with pytest.raises(ValueError, match="does not fit|no place"):
        warm_start(pisr, other.state_dict())


def test_warm_started_residual_pisr_predicts_what_the_base_predicts(base_model):
    torch.manual_seed(1)
    residual = build_model(load_spec("config/models/pd_light_pisr_residual.yaml"))
    report = warm_start(residual, base_model.state_dict())
    assert not report.widened and all(n.startswith(("pisr.", "refine_head.")) for n in report.fresh)
    x = torch.randn(1, 3, 128, 256)
    a = assert_same_predictions(base_model, residual, x)
    # The refine head starts silent, not disconnected: once its last layer moves, F_pan shows.
    with torch.no_grad():
        residual.refine_head[-1].weight.add_(0.1)
        assert not torch.allclose(residual(x)["semantic"], a["semantic"], atol=1e-3)
