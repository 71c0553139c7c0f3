"""Registry names shared by training (which registers) and serving (which loads)."""

PROPENSITY_MODEL = "nhip-propensity"
SEND_TIME_MODEL = "nhip-send-time"
CHAMPION_ALIAS = "champion"

# The short names the CLI takes (`--model send-time`) and the registered models they stand for.
MODEL_NAMES = {"propensity": PROPENSITY_MODEL, "send-time": SEND_TIME_MODEL}
