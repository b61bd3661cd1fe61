"""The DVC plots a user opens: every template dvc.yaml names ships with the project and tells curves apart."""

import json

import yaml

from .conftest import ROOT


def test_multi_file_plots_use_a_shipped_template_that_colours_each_file():
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    series = [next(iter(p.values())) for p in plots if isinstance(p, dict)]
    assert series, "dvc.yaml defines data-series plots"
    for spec in series:
        template = ROOT / ".dvc" / "plots" / f"{spec['template']}.json"
        assert template.is_file(), f"{template} missing: dvc plots show would fail in a fresh clone"
        encoding = json.loads(template.read_text())["encoding"]
        assert encoding["color"]["field"] == "filename", "one colour per model / fold, not per revision only"
        assert spec["y_label"] != "y" and spec["x_label"]
