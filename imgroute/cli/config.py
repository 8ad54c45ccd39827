"""`imgroute config`: the settings in effect and where each comes from (see imgroute/cli/config_view.py)."""

from __future__ import annotations

from imgroute.cli.app import app
from imgroute.cli.options import JsonOpt, OfficialOnlyOpt, PlanOpt, PricingOpt, StatedQualityOpt


@app.command("config")
def config_show(
    pricing: PricingOpt = None,
    plan: PlanOpt = None,
    official_only: OfficialOnlyOpt = False,
    stated_quality: StatedQualityOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The settings in effect (defaults, config.yaml, environment, flags) and where each comes from;
    keys by name and source only."""
    from imgroute.cli.config_view import effective
    from imgroute.output import report
    from imgroute.output.text.console import print_json, stdout_console
    from imgroute.output.text.offers import print_config

    settings = effective(pricing, plan, official_only, stated_quality)
    if as_json:
        print_json(report.config_json(settings))
    else:
        print_config(stdout_console(), settings)
