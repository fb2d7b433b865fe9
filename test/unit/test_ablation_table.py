"""The ablation table reads training runs' val results and groups seeds of one variant."""
import json

from pisr_ros import cli


def _run(root, name, pq, miou):
    run = root / name
    run.mkdir()
    part = {"pq": pq, "sq": 0.5, "rq": 2 * pq, "n": 1}
    (run / "val_metrics.json").write_text(json.dumps(
        {"All": part, "Things": part, "Stuff": part, "iteration": 600, "semantic": {"averageScoreClasses": miou}}))
    return run


def test_seeds_of_a_variant_are_grouped_with_their_range(tmp_path, capsys):
    runs = [_run(tmp_path, "base_s0", 0.10, 0.20), _run(tmp_path, "base_s1", 0.14, 0.22),
            _run(tmp_path, "pisr_s0", 0.12, 0.21)]
    assert cli.main(["ablation-table", *[str(r) for r in runs], "--group"]) == 0
    out = capsys.readouterr().out
    assert "| base_s1 | 600 | 14.0 |" in out
    assert "| base | 2 | 12.0 (10.0-14.0) |" in out
    assert "| pisr | 1 | 12.0 | 50.0 | 24.0 |" in out
