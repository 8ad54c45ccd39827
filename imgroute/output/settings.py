"""`imgroute config --json`: each setting in effect, its value and where it comes from
(config_view.py reads them; this says how they are written out)."""

from __future__ import annotations

from imgroute.output.vocabulary import any_json, map_of, obj, text

CONFIG = obj(
    {
        "settings": map_of(
            obj(
                {
                    "value": any_json("What is in effect: text, a number, true/false, null, or an object"),
                    "source": text(
                        "Where it comes from: default, config.yaml, environment (VARIABLE), flag (--option), "
                        "keys file (PATH), imgroute, home, or imgroute plans set (credits.json)"
                    ),
                }
            ),
            "Each setting by its dotted name (home, plans.apiframe, limits.openai.per_minute, keys.kie, ...); "
            "a key is shown as set or not set, never its value",
        )
    },
    description="The settings in effect and where each comes from.",
)


def config_json(settings) -> dict:
    """`imgroute config --json`, from config_view.effective's settings."""
    return {"settings": {s.name: {"value": s.value, "source": s.source} for s in settings}}
