"""Registry names shared by training (which registers) and serving (which loads)."""

PROPENSITY_MODEL = "nhip-propensity"
SEND_TIME_MODEL = "nhip-send-time"
CHAMPION_ALIAS = "champion"
