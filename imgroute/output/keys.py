"""The keys' shapes: `imgroute keys list --json` and `imgroute keys check --json`. Their builders
live with the keys (`KeyInfo._asdict()` in cli/keys.py, `key_check.as_json`); their schemas are
here, with every other `--json` shape's."""

from __future__ import annotations

from imgroute.output.vocabulary import DAY, PROVIDER, array_of, boolean, enum, nullable, number, obj, states, text

ENV = text("The environment variable the key is read from (it wins over the keys file)")

KEYS = array_of(
    obj({"provider": PROVIDER, "env": ENV, "source": enum(("env", "file", "missing"), "Where the key comes from")}),
    "Which keys are set and where each comes from (never the values).",
)

KEY_STATES = {  # providers.base.KeyCheck.state
    "valid": "the provider accepted the key",
    "refused": "",
    "unknown": "no free route is documented, the key may not read it, or the provider could not be reached",
}

KEYS_CHECK = array_of(
    obj(
        {
            "provider": PROVIDER,
            "env": ENV,
            "source": enum(("env", "file"), "Where the key comes from"),
            "state": states(KEY_STATES),
            "detail": text("What the provider said (empty when nothing worth saying)"),
            "route": text("The free route asked: method and path (empty when none is documented)"),
            "reached": boolean("False: the provider could not be reached"),
            "balance": nullable(number("The balance the answer carries, in `unit`")),
            "unit": nullable(text("`credits`, or a currency code such as USD")),
            "tracked": nullable(
                obj(
                    {"left": number("Credits"), "bought": number("Credits"), "expires": DAY},
                    description="The prepaid balance imgroute tracks for this provider (`imgroute plans`).",
                )
            ),
            "plan": nullable(
                states(
                    {
                        "offered": "`--update` would set the plan to it",
                        "updated": "--update set the plan to it",
                        "config": "the plan is set in config.yaml: change it there",
                    },
                    "When the credit balance is not the one tracked (null otherwise)",
                )
            ),
        }
    ),
    "Each key present, checked with a call its provider documents as free (nothing generated or paid).",
)
