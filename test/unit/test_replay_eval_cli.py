"""replay-eval's command line: the settings it forwards to the node it starts."""
import argparse

import pytest

from pisr_ros.errors import UsageError
from pisr_ros.tools import replay_eval as replay_eval_cli


def _args(*flags):
    parser = argparse.ArgumentParser()
    replay_eval_cli.add_arguments(parser)
    return parser.parse_args(["--bag", "b", "--gt", "g", "--live", *flags])


def test_live_forwards_zero_and_false_like_any_other_value():
    """`if value:` once dropped --center-threshold 0 and --stuff-area 0 on the live path while the
    offline path kept them."""
    args = _args("--center-threshold", "0", "--stuff-area", "0", "--upsample", "false", "--nms-kernel", "5")
    params = replay_eval_cli.node_params(args, replay_eval_cli.given_settings(args))
    assert {k: params[k] for k in ("center_threshold", "stuff_area", "upsample", "nms_kernel")} == {
        "center_threshold": "0.0", "stuff_area": "0", "upsample": "false", "nms_kernel": "5"}
    params = replay_eval_cli.node_params(_args(), replay_eval_cli.given_settings(_args()))
    assert not {"center_threshold", "stuff_area", "upsample", "nms_kernel", "top_k"} & set(params)


def test_flags_refuse_what_the_settings_refuse(capsys):
    with pytest.raises(SystemExit):
        _args("--nms-kernel", "4")
    assert "nms_kernel must be odd" in capsys.readouterr().err


def test_attach_takes_the_node_as_it_is():
    args = _args("--attach", "--center-threshold", "0.3")
    with pytest.raises(UsageError, match="ros2 param set"):
        replay_eval_cli.run_live(args, "/front/image_raw", "sensor_msgs/msg/Image", 1)
