"""A synthetic Vietnamese shop whose customers use many channels, with the ground truth kept aside.

The demo, the notebooks and the model tests need data where the right answer is known: which identifiers
belong to one person, who is likely to buy, at which hour each person reads Zalo, email and SMS. Real
exports never say that, so this module simulates a world from latent per-person parameters and writes what
the shop's systems would have logged about it, in the canonical event format (shared/brief/events.md),
messiness included: phones written six ways, money as `150k`, POS times without an offset, missing event
ids, machine opens, and the identity hard cases (the shop's hotline typed at the till, a junk email at
sign-up, phone typos, second SIMs, old 11-digit numbers) with their true owners in identities.csv.

Everything is drawn from `numpy.random.Generator`s seeded from one seed, so a seed reproduces the data
exactly. What was added later (links and hard cases, Zalo accounts and ZNS) draws from streams of its own,
so adding it moved no earlier event. The work is done on whole arrays (one row per person, per session, per
send or per event) and turned into strings only at the end, which keeps 2,000 customers over 240 days to a
few seconds. The response model of the send channels is shared with the benchmarks (`synthetic.channels`).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.schema import (
    CANONICAL_FIELDS,
    IDENTIFIER_FIELDS,
    KNOWN_CHANNELS,
    KNOWN_TYPES,
)
from nhip.clock import LOCAL_FIXED_TZ, LOCAL_OFFSET_HOURS
from nhip.clock import LOCAL_OFFSET as CLOCK_OFFSET
from synthetic.channels import (
    CHANNEL_FACTOR,
    DELIVERY_RATE,
    PLAN_CHANNELS,
    READING_OFFSET,
    circular_distance,
    open_probability,
)

__all__ = ["DemoData", "generate", "purchase_probability", "write", "DEFAULT_END"]

DEFAULT_END = datetime(2026, 9, 1, 0, 0, tzinfo=LOCAL_FIXED_TZ)
# Seconds from UTC to Vietnam time: the generator works in epoch seconds.
LOCAL_OFFSET = int(CLOCK_OFFSET.total_seconds())
HOUR = 3600
LOCAL_SUFFIX = f"+{LOCAL_OFFSET_HOURS:02d}:00"  # how the generator writes Vietnam times
DAY = 86400
NEVER = np.inf

ZNS = "zalo_zns"
# Channel codes of the event log: the schema's channels, then ZNS (a message channel the schema's list of
# known channels may not hold yet). Appending keeps every other code as it was.
EVENT_CHANNELS: tuple[str, ...] = tuple(dict.fromkeys((*KNOWN_CHANNELS, ZNS)))
CH = {name: i for i, name in enumerate(EVENT_CHANNELS)}
TY = {name: i for i, name in enumerate(KNOWN_TYPES)}
BROWSE_CHANNELS = np.array([CH["web"], CH["app"], CH["zalo_mini_app"]])
BUY_CHANNELS = np.array([CH["web"], CH["app"], CH["zalo_mini_app"], CH["pos"], CH["facebook"]])
# The channels the shop sends campaigns on, in the column order of `preferred_hour_*` and consent arrays.
# ZNS, the fourth channel of PLAN_CHANNELS, came later and is simulated apart (see `_zns_campaigns`).
SEND_CHANNELS = PLAN_CHANNELS[:3]  # ("zalo_oa", "email", "sms")
CAMPAIGNS_PER_DAY = {"zalo_oa": 0.30, "email": 0.30, "sms": 0.12, ZNS: 0.05}  # chance of a campaign each day
SEND_SPREAD = 600  # seconds over which a campaign's messages go out

# --- segments -------------------------------------------------------------------------------------------

SEGMENTS = np.array(["loyal", "regular", "occasional", "window_shopper", "dormant"], dtype=object)
SEGMENT_SHARE = np.array([0.12, 0.25, 0.30, 0.18, 0.15])
MEAN_DAYS_BETWEEN_PURCHASES = np.array([10.0, 30.0, 80.0, 200.0, 300.0])
BROWSE_SESSIONS_PER_DAY = np.array([0.07, 0.04, 0.02, 0.09, 0.005])
CHURN_PROB = np.array([0.06, 0.12, 0.22, 0.22, 0.35])
OPEN_BASE = np.array([0.75, 0.60, 0.45, 0.50, 0.15])
CLICK_GIVEN_OPEN = np.array([0.30, 0.22, 0.15, 0.25, 0.05])

# --- catalogue ------------------------------------------------------------------------------------------

CATEGORIES = ("Mỹ phẩm", "Thời trang nữ", "Thời trang nam", "Đồ gia dụng", "Thực phẩm", "Mẹ và bé")
# Listed most popular first within each category; the order sets the popularity weights.
PRODUCTS: tuple[tuple[str, int, int], ...] = (
    ("Sữa rửa mặt trà xanh 150ml", 0, 145_000),
    ("Kem chống nắng SPF50+ 50ml", 0, 320_000),
    ("Nước tẩy trang micellar 400ml", 0, 189_000),
    ("Son kem lì màu đỏ gạch", 0, 229_000),
    ("Serum vitamin C 30ml", 0, 450_000),
    ("Mặt nạ giấy nha đam (hộp 10 miếng)", 0, 120_000),
    ("Kem dưỡng ẩm ban đêm 50g", 0, 380_000),
    ("Dầu gội bưởi 300ml", 0, 165_000),
    ("Toner hoa hồng 250ml", 0, 210_000),
    ("Phấn nước cushion", 0, 520_000),
    ("Áo sơ mi lụa công sở", 1, 390_000),
    ("Váy liền hoa nhí", 1, 450_000),
    ("Quần jean ống rộng nữ", 1, 420_000),
    ("Chân váy chữ A", 1, 280_000),
    ("Áo thun croptop", 1, 160_000),
    ("Áo khoác cardigan len", 1, 350_000),
    ("Giày sandal quai mảnh", 1, 310_000),
    ("Áo dài cách tân", 1, 890_000),
    ("Túi xách da nữ", 1, 990_000),
    ("Đầm dạ hội", 1, 1_250_000),
    ("Áo thun cotton nam", 2, 180_000),
    ("Áo polo nam", 2, 280_000),
    ("Quần short nam", 2, 220_000),
    ("Áo sơ mi nam dài tay", 2, 350_000),
    ("Quần kaki nam", 2, 390_000),
    ("Quần jean nam slim fit", 2, 450_000),
    ("Thắt lưng da nam", 2, 290_000),
    ("Ví da nam", 2, 340_000),
    ("Áo khoác gió nam", 2, 520_000),
    ("Giày thể thao nam", 2, 850_000),
    ("Nồi chiên không dầu 5L", 3, 1_890_000),
    ("Ấm siêu tốc 1.7L", 3, 320_000),
    ("Chảo chống dính 28cm", 3, 380_000),
    ("Hộp đựng thực phẩm thủy tinh (bộ 5)", 3, 280_000),
    ("Nồi cơm điện 1.8L", 3, 990_000),
    ("Máy xay sinh tố", 3, 650_000),
    ("Bộ dao nhà bếp 6 món", 3, 460_000),
    ("Quạt đứng 5 cánh", 3, 750_000),
    ("Bộ nồi inox 5 món", 3, 1_450_000),
    ("Máy lọc không khí", 3, 2_950_000),
    ("Cà phê rang xay Buôn Ma Thuột 500g", 4, 185_000),
    ("Gạo ST25 túi 5kg", 4, 210_000),
    ("Nước mắm Phú Quốc 40 độ đạm 500ml", 4, 95_000),
    ("Trà ô long Bảo Lộc 250g", 4, 160_000),
    ("Hạt điều rang muối Bình Phước 500g", 4, 240_000),
    ("Mì khô Hà Nội gói 500g", 4, 45_000),
    ("Mật ong rừng U Minh 500ml", 4, 260_000),
    ("Khô gà lá chanh 300g", 4, 120_000),
    ("Tiêu đen Phú Quốc 200g", 4, 65_000),
    ("Bánh pía Sóc Trăng (hộp 4 cái)", 4, 85_000),
    ("Bỉm quần size M (gói 64 miếng)", 5, 345_000),
    ("Khăn ướt không mùi (lốc 10 gói)", 5, 150_000),
    ("Sữa bột cho bé 900g", 5, 560_000),
    ("Bình sữa thủy tinh 240ml", 5, 290_000),
    ("Bộ quần áo sơ sinh cotton", 5, 175_000),
    ("Nước giặt đồ em bé 2L", 5, 185_000),
    ("Đồ chơi xếp hình gỗ", 5, 230_000),
    ("Máy hâm sữa", 5, 420_000),
    ("Ghế ăn dặm", 5, 890_000),
    ("Xe đẩy em bé gấp gọn", 5, 2_650_000),
)
FAVOURITE_WEIGHTS = {  # by gender: which categories a person is drawn to
    "f": np.array([0.30, 0.25, 0.03, 0.14, 0.14, 0.14]),
    "m": np.array([0.05, 0.04, 0.35, 0.20, 0.25, 0.11]),
}
BROWSING_CATEGORY_WEIGHTS = np.array([0.20, 0.17, 0.15, 0.16, 0.18, 0.14])

# --- names and identifiers ------------------------------------------------------------------------------

FAMILY_NAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
                "Hồ", "Ngô", "Dương", "Lý")
FAMILY_WEIGHTS = np.array([38, 11, 9.5, 7, 5, 4, 4.5, 3.9, 3.5, 2.1, 2, 1.4, 1.3, 1.3, 1, 0.5])
MIDDLE_NAMES = {
    "f": ("Thị", "Thị", "Thị", "Ngọc", "Thanh", "Thu", "Phương", "Bảo", "Minh", "Mỹ"),
    "m": ("Văn", "Văn", "Hữu", "Minh", "Đức", "Quốc", "Thanh", "Gia", "Hoàng", "Công"),
}
GIVEN_NAMES = {
    "f": ("An", "Châu", "Hà", "Hạnh", "Hương", "Lan", "Linh", "Mai", "Thảo", "Trang", "Vy", "Ngân", "Nhung",
          "Yến", "Hằng", "Thủy", "Hoa", "Nhi", "Trâm", "Uyên", "Quỳnh", "Giang", "Ngọc", "Phương"),
    "m": ("An", "Bình", "Dũng", "Khánh", "Nam", "Phúc", "Quân", "Tuấn", "Hùng", "Long", "Hải", "Sơn",
          "Trung", "Khoa", "Huy", "Đạt", "Tâm", "Thắng", "Cường", "Việt", "Minh", "Thành"),
}
EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com")
EMAIL_DOMAIN_WEIGHTS = np.array([0.72, 0.10, 0.07, 0.06, 0.05])

# Mobile prefixes after the 2018 renumbering, with their old 11-digit form where there was one.
MOBILE_PREFIXES = {
    "032": "0162", "033": "0163", "034": "0164", "035": "0165", "036": "0166", "037": "0167",
    "038": "0168", "039": "0169", "086": None, "096": None, "097": None, "098": None,  # Viettel
    "070": "0120", "076": "0126", "077": "0122", "078": "0128", "079": "0121", "089": None,
    "090": None, "093": None,  # MobiFone
    "081": "0127", "082": "0129", "083": "0123", "084": "0124", "085": "0125", "088": None,
    "091": None, "094": None,  # VinaPhone
    "052": None, "056": "0186", "058": "0188", "092": None,  # Vietnamobile
}
PHONE_FORMATS = ("0912345678", "0912 345 678", "+84 912 345 678", "84912345678", "(+84) 912.345.678",
                 "+84912345678", "legacy 11-digit")
# How often each source writes a phone in each format (columns follow PHONE_FORMATS). Zalo and SMS
# gateways return 84…; people typing into a form or a chat write whatever they like; old POS records
# still hold the pre-2018 number for a few customers.
PHONE_FORMAT_BY_CHANNEL = {
    "web": [0.43, 0.20, 0.14, 0.05, 0.10, 0.06, 0.02],
    "app": [0.43, 0.20, 0.14, 0.05, 0.10, 0.06, 0.02],
    "zalo_oa": [0.05, 0.0, 0.0, 0.90, 0.0, 0.05, 0.0],
    "zalo_mini_app": [0.30, 0.0, 0.0, 0.40, 0.0, 0.30, 0.0],
    "facebook": [0.38, 0.25, 0.15, 0.05, 0.10, 0.05, 0.02],
    "email": [1.0, 0, 0, 0, 0, 0, 0],
    "sms": [0.10, 0.0, 0.0, 0.85, 0.0, 0.05, 0.0],
    ZNS: [0.05, 0.0, 0.0, 0.90, 0.0, 0.05, 0.0],  # the ZNS API takes 84…
    "pos": [0.58, 0.30, 0.02, 0.02, 0.01, 0.04, 0.03],
}

# Identity hard cases (see `_render_hard_identifiers`). In identities.csv a value that is no person's own
# is listed under SHARED (the shop's hotline, junk emails) or NOBODY (a mistyped phone nobody has).
SHARED, NOBODY = "shared", "nobody"
SHOP_HOTLINES = ("(028) 3930 6868", "028 3930 6868", "02839306868")  # one landline, as cashiers type it
JUNK_EMAILS = ("test@gmail.com", "Test@gmail.com", "test@gmail.com ")  # "no email" at sign-up
HARD_CASE_RATES = {
    "second_phone": 0.07,  # share of phone owners with a second SIM
    "second_phone_row": 0.35,  # share of their phone rows (not Zalo OA or SMS) written with it
    "hotline": 0.04,  # share of POS purchases where the cashier typed the shop's hotline
    "typo": 0.02,  # share of POS phone rows with one digit mistyped
    "wrong_customer": 0.01,  # share of POS phone rows carrying another customer's phone
    "junk_email": 0.05,  # share of sign-ups that give a junk email
}

# Zalo and ZNS (see `_zalo_accounts`, `_zns_consents`).
ZNS_RATES = {
    "zalo_with_phone": 0.85,  # share of phone owners with a Zalo account (~75 M users, ~100 M people)
    "consent_per_purchase": 0.30,  # chance a purchase's "nhận thông báo qua Zalo" box is ticked
    "revoke": 0.05,  # share of ZNS consenters with Zalo who withdraw later …
    "revoke_churner": 0.25,  # … and of those who are about to stop buying
}

STORES = ("CH Quận 1 - Lê Lợi", "CH Quận 3 - Võ Văn Tần", "CH Thủ Đức - Võ Văn Ngân", "CH Hà Nội - Cầu Giấy",
          "CH Đà Nẵng - Hải Châu", "CH Cần Thơ - Ninh Kiều")
REFERRERS = ("google", "facebook", "tiktok", "zalo", "coccoc")
UTM_BY_SEND_CHANNEL = (("zalo", "oa"), ("email", "newsletter"), ("sms", "sms"), ("zalo", "zns"))  # PLAN_CHANNELS
CHAT_TEXTS = ("Shop ơi còn hàng không ạ?", "Giá bao nhiêu vậy shop?", "Ship về Đà Nẵng mất mấy ngày ạ?",
              "Cho mình đặt 1 cái nhé", "Có size khác không shop?", "Mình chuyển khoản rồi nha",
              "Sản phẩm này dùng cho da dầu được không?", "Khi nào có hàng lại vậy ạ?")
OA_REPLY_TEXTS = ("Cảm ơn shop", "Mã giảm giá dùng thế nào ạ?", "Ưu đãi này đến ngày nào vậy?", "Ok shop",
                  "Mình muốn hủy nhận tin", "Cho mình xem thêm mẫu khác")

# Online shopping by local hour of day, for activity that is not tied to a person's own reading hours.
GENERIC_HOUR_WEIGHTS = np.array([0.5, 0.3, 0.2, 0.1, 0.1, 0.3, 1, 2, 3, 4, 4.5, 5,
                                 5.5, 4.5, 4, 4, 4, 4, 4.5, 6, 7.5, 8, 6.5, 3])
READING_MODES = np.array([7.5, 11.5, 20.5])
READING_MODE_WEIGHTS = np.array([0.22, 0.20, 0.58])


@dataclass
class DemoData:
    """The generated world: what the shop logged (`events`) and what only the simulator knows."""

    events: pd.DataFrame
    truth: pd.DataFrame
    identities: pd.DataFrame
    products: pd.DataFrame


# ========================================================================================================
# public API
# ========================================================================================================


def generate(customers: int = 2000, days: int = 240, seed: int = 7, end: datetime | None = None) -> DemoData:
    """Simulate `customers` people over the `days` days before `end` (default 2026-09-01 00:00, Vietnam).

    The same arguments always give the same data. A naive `end` is read as Vietnamese local time.
    """
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be positive")
    rng = np.random.default_rng(seed)
    clock = _Clock.ending(end or DEFAULT_END, days)
    catalog = _Catalog.build()
    people = _make_people(rng, customers, clock)

    log = _EventLog()
    _purchases_and_browsing(rng, people, catalog, clock, log)
    _facebook_chats(rng, people, catalog, clock, log)
    _consent_events(people, log)
    messages = _campaigns(rng, people, clock, log)
    raw = _keep_possible(log.concat(), people, clock)
    raw = _keep_possible(_EventLog.join(raw, _identify_events(rng, people, raw)), people, clock)
    raw = _sorted(raw)

    # Links and identity hard cases draw from their own stream, so they do not shift any other draw.
    links_rng = np.random.default_rng([seed, 1])
    people.phone2 = _second_phones(links_rng, people)
    # So do Zalo accounts and ZNS: their events are simulated and rendered apart, then merged in by time.
    zns_rng = np.random.default_rng([seed, 2])
    people.has_zalo = _zalo_accounts(zns_rng, people)
    consents = _sorted(_keep_possible(_zns_consents(zns_rng, people, raw, clock), people, clock))
    zns_log = _EventLog()
    messages = _zns_campaigns(zns_rng, people, consents, clock, zns_log, messages)
    zns_raw = _sorted(_keep_possible(_EventLog.join(consents, zns_log.concat()), people, clock))

    events, owners = _render(rng, links_rng, raw, people, catalog, messages)
    zns_events, zns_owners = _render(zns_rng, zns_rng, zns_raw, people, catalog, messages)
    order = np.argsort(np.concatenate([raw["t"], zns_raw["t"]]), kind="stable")
    raw = _select(_EventLog.join(raw, zns_raw), order)
    events = pd.concat([events, zns_events], ignore_index=True).iloc[order].reset_index(drop=True)
    owners = {k: np.concatenate([owners[k], zns_owners[k]])[order] for k in owners}
    return DemoData(
        events=events,
        truth=_truth_frame(people, raw, clock),
        identities=_identities_frame(events, raw["p"], people, owners),
        products=catalog.frame(),
    )


def purchase_probability(truth: pd.DataFrame, days: float) -> np.ndarray:
    """P(at least one purchase in the `days` after the simulated window), one value per row of `truth`.

    Purchases are a Poisson process at `purchase_rate` (per day) from joining until churning, and every
    churn the simulator draws falls inside the window: a person with a `churn_at` buys nothing more, and
    anyone else keeps buying at their rate.
    """
    if days < 0:
        raise ValueError("days must not be negative")
    rate = truth["purchase_rate"].to_numpy(dtype=float)
    return np.where(truth["churn_at"].isna().to_numpy(), -np.expm1(-rate * days), 0.0)


def write(data: DemoData, out_dir: Path) -> dict[str, Path]:
    """Write events.jsonl, truth.csv, identities.csv and products.csv into `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "events": out / "events.jsonl",
        "truth": out / "truth.csv",
        "identities": out / "identities.csv",
        "products": out / "products.csv",
    }
    _write_jsonl(data.events, paths["events"])
    data.truth.to_csv(paths["truth"], index=False)
    data.identities.to_csv(paths["identities"], index=False)
    data.products.to_csv(paths["products"], index=False)
    return paths


# ========================================================================================================
# time and catalogue
# ========================================================================================================


@dataclass(frozen=True)
class _Clock:
    """The simulated window in epoch seconds; local days are counted from the first local midnight."""

    start: int
    end: int
    midnight0: int
    days: int

    @classmethod
    def ending(cls, end: datetime, days: int) -> _Clock:
        if end.tzinfo is None:
            end = end.replace(tzinfo=LOCAL_FIXED_TZ)
        end_t = int(end.timestamp())
        start_t = end_t - days * DAY
        midnight0 = (start_t + LOCAL_OFFSET) // DAY * DAY - LOCAL_OFFSET
        return cls(start_t, end_t, midnight0, days)

    @staticmethod
    def local_day_start(t: np.ndarray) -> np.ndarray:
        return np.floor((t + LOCAL_OFFSET) / DAY) * DAY - LOCAL_OFFSET

    @staticmethod
    def local_hour(t: np.ndarray) -> np.ndarray:
        return ((t + LOCAL_OFFSET) % DAY) / HOUR


@dataclass(frozen=True)
class _Catalog:
    """Products as arrays, plus per-category popularity so a product is one `searchsorted` away."""

    name: np.ndarray
    category: np.ndarray
    price: np.ndarray
    by_category: tuple[np.ndarray, ...]
    cumulative: tuple[np.ndarray, ...]

    @classmethod
    def build(cls) -> _Catalog:
        name = np.array([_nfc(p[0]) for p in PRODUCTS], dtype=object)
        category = np.array([p[1] for p in PRODUCTS])
        price = np.array([p[2] for p in PRODUCTS], dtype=np.int64)
        by_cat, cum = [], []
        for c in range(len(CATEGORIES)):
            members = np.flatnonzero(category == c)
            weights = 1.0 / (np.arange(len(members)) + 1.0) ** 0.8
            by_cat.append(members)
            cum.append(np.cumsum(weights) / weights.sum())
        return cls(name, category, price, tuple(by_cat), tuple(cum))

    @property
    def ids(self) -> np.ndarray:
        return np.array([f"SP{i + 1:03d}" for i in range(len(self.name))], dtype=object)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "product_id": self.ids,
            "product_name": self.name,
            "category": np.array(CATEGORIES, dtype=object)[self.category],
            "price": self.price,
        })


# ========================================================================================================
# people
# ========================================================================================================


@dataclass
class _People:
    """One entry per person in every array; identifiers are None where the person has none."""

    n: int
    pid: np.ndarray
    gender: np.ndarray
    name: np.ndarray  # (n, 3): "Nguyễn Thị Lan", "NGUYỄN THỊ LAN", "Lan Nguyễn"
    segment: np.ndarray
    rate: np.ndarray
    browse_rate: np.ndarray
    add_to_cart_prob: np.ndarray
    open_base: np.ndarray
    join_t: np.ndarray
    churn_t: np.ndarray
    pref_hour: np.ndarray  # (n, 3) in SEND_CHANNELS order
    favourites: np.ndarray  # (n, 2), -1 when only one favourite
    uses: np.ndarray  # (n, len(KNOWN_CHANNELS)) bool
    buy_cum: np.ndarray  # (n, len(BUY_CHANNELS)) cumulative purchase-channel probabilities
    browse_cum: np.ndarray  # (n, len(BROWSE_CHANNELS))
    phone: np.ndarray  # (n, len(PHONE_FORMATS)) the phone as written in each format
    has_phone: np.ndarray
    email: np.ndarray  # (n, 5) canonical and messy variants
    has_email: np.ndarray
    zalo_user_id: np.ndarray
    zalo_app_user_id: np.ndarray
    fb_psid: np.ndarray
    pos_customer_id: np.ndarray
    device_channel: np.ndarray  # (n, 2) web/app channel code of each device, -1 for none
    anonymous_id: np.ndarray  # (n, 2)
    machine_opener: np.ndarray
    consent_t: np.ndarray  # (n, 3) first moment a send is allowed; -inf for legacy lists without consent
    unsub_t: np.ndarray  # (n, 3)
    os: np.ndarray
    store: np.ndarray
    phone2: np.ndarray | None = None  # (n, len(PHONE_FORMATS)) a second SIM for a few people, else None
    has_zalo: np.ndarray | None = None  # a Zalo account (registered on a phone), whether the shop knows it

    @property
    def zns_hour(self) -> np.ndarray:
        """The hour a ZNS is read: it arrives in Zalo, so the Zalo OA reading hour for people on the OA,
        else the hour they read texts."""
        on_oa = self.uses[:, CH["zalo_oa"]]
        return np.where(on_oa, self.pref_hour[:, SEND_CHANNELS.index("zalo_oa")],
                        self.pref_hour[:, SEND_CHANNELS.index("sms")])


def _make_people(rng: np.random.Generator, n: int, clock: _Clock) -> _People:
    """Draw every latent trait and identifier; the order of draws is fixed so seeds reproduce."""
    gender = np.where(rng.random(n) < 0.62, "f", "m")
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
    rate = rng.gamma(2.0, 1.0 / (2.0 * MEAN_DAYS_BETWEEN_PURCHASES[segment]))
    browse_rate = BROWSE_SESSIONS_PER_DAY[segment] * rng.gamma(2.0, 0.5, n) + 1.5 * rate
    add_to_cart_prob = np.clip(0.04 + 2.0 * rate + 0.05 * (segment == 3), 0.0, 0.5)
    open_base = np.clip(OPEN_BASE[segment] * rng.uniform(0.6, 1.3, n), 0.0, 0.9)

    pref_hour = _preferred_hours(rng, n)
    join_t, churn_t = _lifetimes(rng, segment, pref_hour, clock)
    uses = _channel_mix(rng, n)
    identifiers = _identifiers(rng, gender)
    has_phone, has_email = identifiers["has_phone"], identifiers["has_email"]
    uses[:, CH["sms"]] &= has_phone
    uses[:, CH["email"]] &= has_email
    consent_t, unsub_t = _consents(rng, uses, has_phone, has_email, join_t, churn_t, pref_hour, clock)
    device_channel, anonymous_id = _devices(rng, uses)

    return _People(
        n=n,
        pid=np.array([f"p{i + 1:05d}" for i in range(n)], dtype=object),
        gender=gender,
        name=identifiers["name"],
        segment=segment,
        rate=rate,
        browse_rate=browse_rate,
        add_to_cart_prob=add_to_cart_prob,
        open_base=open_base,
        join_t=join_t,
        churn_t=churn_t,
        pref_hour=pref_hour,
        favourites=_favourites(rng, gender),
        uses=uses,
        buy_cum=_channel_weights(rng, uses[:, BUY_CHANNELS]),
        browse_cum=_channel_weights(rng, uses[:, BROWSE_CHANNELS]),
        phone=identifiers["phone"],
        has_phone=has_phone,
        email=identifiers["email"],
        has_email=has_email,
        zalo_user_id=_optional(_unique_digits(rng, n, 19, "8"), uses[:, CH["zalo_oa"]]),
        zalo_app_user_id=_optional(_unique_digits(rng, n, 19, "3"), uses[:, CH["zalo_mini_app"]]),
        fb_psid=_optional(_unique_digits(rng, n, 16, "2"), uses[:, CH["facebook"]]),
        pos_customer_id=_pos_ids(rng, uses[:, CH["pos"]], has_phone),
        device_channel=device_channel,
        anonymous_id=anonymous_id,
        machine_opener=(consent_t[:, SEND_CHANNELS.index("email")] < NEVER) & (rng.random(n) < 0.05),
        consent_t=consent_t,
        unsub_t=unsub_t,
        os=np.where(rng.random(n) < 0.7, "android", "ios"),
        store=rng.integers(0, len(STORES), n),
    )


def _lifetimes(rng, segment: np.ndarray, pref_hour: np.ndarray, clock: _Clock) -> tuple[np.ndarray, ...]:
    """Most people are customers already when the window opens; the rest arrive during it. Some churn:
    after `churn_t` they do nothing at all, which is what a propensity model has to notice."""
    n = len(segment)
    span = clock.days * DAY
    existing = rng.random(n) < 0.65
    arrival = clock.start + np.where(existing, rng.uniform(0, min(7 * DAY, span * 0.1), n),
                                     rng.uniform(0, span * 0.85, n))
    join_t = _at_activity_hour(rng, pref_hour, np.arange(n), arrival)
    join_t = np.where(join_t < clock.start, join_t + DAY, join_t)
    churns = rng.random(n) < CHURN_PROB[segment]
    churn_at = join_t + 10 * DAY + rng.random(n) * (clock.end - join_t - 10 * DAY)
    churn_t = np.where(churns & (churn_at < clock.end), churn_at, NEVER)
    return join_t, churn_t


def _channel_mix(rng: np.random.Generator, n: int) -> np.ndarray:
    """Which channels each person touches; everybody has at least one way to buy."""
    share = {"web": 0.70, "app": 0.40, "zalo_oa": 0.65, "zalo_mini_app": 0.30, "facebook": 0.35,
             "email": 0.80, "sms": 0.80, "pos": 0.45}
    uses = np.zeros((n, len(KNOWN_CHANNELS)), dtype=bool)
    for name, p in share.items():
        uses[:, CH[name]] = rng.random(n) < p
    cannot_buy = ~uses[:, BUY_CHANNELS].any(axis=1)
    uses[cannot_buy, CH["web"]] = True
    return uses


def _channel_weights(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """Person-specific channel preferences (Dirichlet over the allowed channels), as cumulative rows."""
    weights = rng.gamma(1.0, 1.0, allowed.shape) * allowed
    total = weights.sum(axis=1, keepdims=True)
    cum = np.cumsum(weights / np.where(total > 0, total, 1.0), axis=1)
    cum[total[:, 0] > 0, -1] = 1.0
    return cum


def _preferred_hours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Reading hours cluster at breakfast, lunch and evening. A person's channels share a habit but are
    not identical: each channel keeps the person's mode most of the time and has its own noise."""
    base_mode = rng.choice(len(READING_MODES), size=n, p=READING_MODE_WEIGHTS)
    person_noise = rng.normal(0.0, 1.2, n)
    hours = np.empty((n, len(SEND_CHANNELS)), dtype=np.int64)
    for j in range(len(SEND_CHANNELS)):
        other_mode = rng.choice(len(READING_MODES), size=n, p=READING_MODE_WEIGHTS)
        mode = np.where(rng.random(n) < 0.25, other_mode, base_mode)
        h = READING_MODES[mode] + 0.7 * person_noise + rng.normal(0.0, 0.8, n)
        hours[:, j] = np.floor(h).astype(np.int64) % 24
    return hours


def _favourites(rng: np.random.Generator, gender: np.ndarray) -> np.ndarray:
    """One or two favourite categories, drawn without replacement (Gumbel top-k) by gender taste."""
    n = len(gender)
    weights = np.where((gender == "f")[:, None], FAVOURITE_WEIGHTS["f"], FAVOURITE_WEIGHTS["m"])
    keys = np.log(weights) + rng.gumbel(size=weights.shape)
    top2 = np.argsort(-keys, axis=1)[:, :2]
    top2[rng.random(n) < 0.45, 1] = -1
    return top2


def _devices(rng: np.random.Generator, uses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Up to two anonymous ids per person: a browser cookie and/or an app install, sometimes a second
    browser. Only an `identify` on that device ties its cookie to the person."""
    n = len(uses)
    web, app = uses[:, CH["web"]], uses[:, CH["app"]]
    dev = np.full((n, 2), -1, dtype=np.int64)
    dev[web, 0] = CH["web"]
    dev[app & ~web, 0] = CH["app"]
    dev[web & app, 1] = CH["app"]
    dev[web & ~app & (rng.random(n) < 0.30), 1] = CH["web"]
    dev[app & ~web & (rng.random(n) < 0.10), 1] = CH["app"]
    raw = rng.integers(0, 256, size=(n, 2, 16), dtype=np.uint8)
    anon = np.full((n, 2), None, dtype=object)
    for i, k in zip(*np.nonzero(dev >= 0)):
        anon[i, k] = _uuid4(raw[i, k])
    return dev, anon


def _consents(rng, uses, has_phone, has_email, join_t, churn_t, pref_hour, clock):
    """When each person opted in to zalo_oa / email / sms, and when (if ever) they opted out.

    People who never opted in get nothing, except a few on old imported lists (consent = -inf, no event):
    real shops have those, and the consent checks downstream should be able to spot them.
    """
    n = len(join_t)
    consent_t = np.full((n, 3), NEVER)
    unsub_t = np.full((n, 3), NEVER)
    reachable = np.stack([np.ones(n, bool), has_email, has_phone], axis=1)
    life_end = np.minimum(churn_t, clock.end)
    churner = np.isfinite(churn_t)
    for j, name in enumerate(SEND_CHANNELS):
        delay = np.minimum(rng.exponential(2 * DAY, n), 0.5 * (life_end - join_t))
        when = _at_activity_hour(rng, pref_hour, np.arange(n), join_t + delay, not_before=join_t)
        opted = uses[:, CH[name]] & (when < life_end)
        consent_t[opted, j] = when[opted]
        legacy_share = 0.0 if name == "zalo_oa" else 0.04
        legacy = reachable[:, j] & ~uses[:, CH[name]] & (rng.random(n) < legacy_share)
        consent_t[legacy, j] = -NEVER
        leaves = np.flatnonzero(opted & (rng.random(n) < np.where(churner, 0.35, 0.07)))
        since = consent_t[leaves, j]
        before_churn = np.maximum(churn_t[leaves] - rng.uniform(0, 14 * DAY, len(leaves)), since + HOUR)
        anytime = since + rng.random(len(leaves)) * (life_end[leaves] - since)
        unsub_t[leaves, j] = np.where(churner[leaves], before_churn, anytime)
    return consent_t, unsub_t


# --- identifiers ----------------------------------------------------------------------------------------


def _identifiers(rng: np.random.Generator, gender: np.ndarray) -> dict[str, np.ndarray]:
    """Names, phones and emails. Emails are built from the name, as Vietnamese addresses usually are."""
    n = len(gender)
    family = rng.choice(len(FAMILY_NAMES), size=n, p=FAMILY_WEIGHTS / FAMILY_WEIGHTS.sum())
    middle_pick = rng.integers(0, 10, n)
    given_pick = rng.integers(0, 100, n)
    birth_year = rng.integers(1965, 2006, n)
    has_phone = rng.random(n) < 0.96
    has_email = rng.random(n) < 0.72
    email_style = rng.integers(0, 4, n)
    domain = rng.choice(len(EMAIL_DOMAINS), size=n, p=EMAIL_DOMAIN_WEIGHTS)
    digits = _unique_phones(rng, n)

    names = np.full((n, 3), None, dtype=object)
    phones = np.full((n, len(PHONE_FORMATS)), None, dtype=object)
    emails = np.full((n, 5), None, dtype=object)
    taken: set[str] = set()
    for i in range(n):
        g = gender[i]
        fam = FAMILY_NAMES[family[i]]
        mid = MIDDLE_NAMES[g][middle_pick[i] % len(MIDDLE_NAMES[g])]
        giv = GIVEN_NAMES[g][given_pick[i] % len(GIVEN_NAMES[g])]
        full = _nfc(f"{fam} {mid} {giv}")
        names[i] = (full, full.upper(), _nfc(f"{giv} {fam}"))
        if has_phone[i]:
            phones[i] = _phone_variants(digits[i])
        if has_email[i]:
            address = _email_address(fam, mid, giv, int(birth_year[i]), int(email_style[i]),
                                     EMAIL_DOMAINS[domain[i]], taken)
            local, _, host = address.partition("@")
            emails[i] = (address, f"{local.capitalize()}@{host}", address.upper(), f" {address} ",
                         f"{address} ")
    return {"name": names, "phone": phones, "has_phone": has_phone, "email": emails, "has_email": has_email}


def _unique_phones(rng: np.random.Generator, n: int) -> list[str]:
    prefixes = list(MOBILE_PREFIXES)
    weights = np.array([3.0 if p.startswith(("03", "09", "08")) else 1.0 for p in prefixes])
    chosen = rng.choice(len(prefixes), size=3 * n + 10, p=weights / weights.sum())
    tails = rng.integers(0, 10_000_000, size=3 * n + 10)
    seen: dict[str, None] = {}
    for pre, tail in zip(chosen, tails):
        seen.setdefault(f"{prefixes[pre]}{tail:07d}", None)
        if len(seen) == n:
            break
    return list(seen)


def _phone_variants(d: str) -> tuple[str, ...]:
    """The same mobile number in every notation of PHONE_FORMATS (d is the 10-digit 0xxxxxxxxx form)."""
    r = d[1:]
    old = MOBILE_PREFIXES.get(d[:3])
    return (d, f"{d[:4]} {d[4:7]} {d[7:]}", f"+84 {r[:3]} {r[3:6]} {r[6:]}", f"84{r}",
            f"(+84) {r[:3]}.{r[3:6]}.{r[6:]}", f"+84{r}", f"{old}{d[3:]}" if old else d)


def _email_address(fam: str, mid: str, giv: str, year: int, style: int, domain: str, taken: set[str]) -> str:
    f, m, g = _ascii(fam), _ascii(mid), _ascii(giv)
    local = (f"{g}{f}{year % 100:02d}", f"{g}.{f}{year}", f"{f}{m}{g}", f"{g}{m}{f}")[style]
    candidate, k = local, 1
    while f"{candidate}@{domain}" in taken:
        k += 1
        candidate = f"{local}{k}"
    taken.add(f"{candidate}@{domain}")
    return f"{candidate}@{domain}"


def _unique_digits(rng: np.random.Generator, n: int, length: int, lead: str) -> np.ndarray:
    """Numeric id strings of a fixed length; the leading digit keeps the id spaces of sources apart."""
    out: dict[str, None] = {}
    while len(out) < n:
        block = rng.integers(0, 10, size=(n, length - 1), dtype=np.uint8) + ord("0")
        for row in block:
            out.setdefault(lead + row.tobytes().decode(), None)
            if len(out) == n:
                break
    return np.array(list(out), dtype=object)


def _pos_ids(rng: np.random.Generator, uses_pos: np.ndarray, has_phone: np.ndarray) -> np.ndarray:
    """Store loyalty cards ("KH" + digits). A POS customer without a phone always has one."""
    n = len(uses_pos)
    numbers = rng.choice(900_000, size=n, replace=False) + 100_000
    has_card = uses_pos & ((rng.random(n) < 0.85) | ~has_phone)
    return _optional(np.array([f"KH{x}" for x in numbers], dtype=object), has_card)


def _optional(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = np.array(values, dtype=object)
    out[~present] = None
    return out


# ========================================================================================================
# event log (integer columns until rendering)
# ========================================================================================================

LOG_COLUMNS = {"p": np.int64, "t": np.int64, "ch": np.int64, "ty": np.int64, "prod": np.int64,
               "qty": np.int64, "msg": np.int64, "dev": np.int64, "aux": np.int64}
AUX_SESSION_START, AUX_MACHINE_OPEN = 1, 2  # aux codes; message_replied rows keep a text index instead


class _EventLog:
    """Blocks of events as integer arrays; rendering to strings happens once, at the end."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, p, t, ch, ty, **extra) -> None:
        n = len(p)
        if n == 0:
            return
        block = {"p": p, "t": np.floor(t), "ch": ch, "ty": ty, **extra}
        self.blocks.append({k: np.broadcast_to(np.asarray(block.get(k, -1)), (n,)).astype(dtype)
                            for k, dtype in LOG_COLUMNS.items()})

    def concat(self) -> dict[str, np.ndarray]:
        if not self.blocks:
            return {k: np.empty(0, dtype) for k, dtype in LOG_COLUMNS.items()}
        return {k: np.concatenate([b[k] for b in self.blocks]) for k in LOG_COLUMNS}

    @staticmethod
    def join(*tables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([tab[k] for tab in tables]) for k in LOG_COLUMNS}


def _select(table: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[keep] for k, v in table.items()}


def _keep_possible(raw: dict[str, np.ndarray], people: _People, clock: _Clock) -> dict[str, np.ndarray]:
    """Drop what falls outside the window and anything a person 'did' before joining or after churning.
    Sends, deliveries and machine opens are the shop's and the mail client's doing, so they stay."""
    p, t, ty = raw["p"], raw["t"], raw["ty"]
    by_shop = np.isin(ty, [TY["message_sent"], TY["message_delivered"]]) | (
        (ty == TY["message_opened"]) & (raw["aux"] == AUX_MACHINE_OPEN))
    alive = (t >= people.join_t[p]) & (t < people.churn_t[p])
    return _select(raw, (t >= clock.start) & (t < clock.end) & (by_shop | alive))


def _sorted(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Chronological order; ties keep generation order, so a delivery stays ahead of its machine open."""
    return _select(raw, np.argsort(raw["t"], kind="stable"))


# ========================================================================================================
# behaviour
# ========================================================================================================


def _purchases_and_browsing(rng, people: _People, catalog: _Catalog, clock: _Clock, log: _EventLog) -> None:
    """Purchases are a Poisson process at the person's rate. Online purchases usually end a session that
    viewed and carted the product, and many purchases follow research sessions in the days before, so
    browsing predicts buying. Background browsing adds sessions that lead nowhere (window shoppers!)."""
    life_start = people.join_t
    life_end = np.minimum(people.churn_t, clock.end)
    active = np.maximum(life_end - life_start, 0.0)

    # background sessions, the first of them the visit on which the person arrived
    can_browse = people.browse_cum[:, -1] > 0
    n_sessions = rng.poisson(people.browse_rate * active / DAY) * can_browse
    sp = np.repeat(np.arange(people.n), n_sessions)
    s_day = _Clock.local_day_start(life_start[sp] + rng.random(len(sp)) * active[sp])
    s_t = s_day + _activity_hours(rng, people.pref_hour, sp) * HOUR
    arrivals = np.flatnonzero(can_browse)
    sp, s_t = np.concatenate([arrivals, sp]), np.concatenate([life_start[arrivals], s_t])
    s_ch = BROWSE_CHANNELS[_draw_rows(rng, people.browse_cum, sp)]
    _sessions(rng, people, catalog, log, sp, s_ch, s_t, kind="background")

    # purchases
    n_buys = rng.poisson(people.rate * active / DAY)
    bp = np.repeat(np.arange(people.n), n_buys)
    uniform_t = life_start[bp] + rng.random(len(bp)) * active[bp]
    b_ch = BUY_CHANNELS[_draw_rows(rng, people.buy_cum, bp)]
    at_store = b_ch == CH["pos"]
    hour = np.where(at_store, rng.uniform(9.0, 21.5, len(bp)), _activity_hours(rng, people.pref_hour, bp))
    b_t = _Clock.local_day_start(uniform_t) + hour * HOUR
    b_t = np.where((b_t >= life_start[bp]) & (b_t < life_end[bp]), b_t, uniform_t)
    product = _pick_products(rng, people, catalog, bp, favourite_share=0.8)
    quantity = rng.choice([1, 2, 3, 4, 5], size=len(bp), p=[0.72, 0.18, 0.06, 0.025, 0.015])
    quantity = np.where(catalog.price[product] >= 1_000_000, 1, quantity)
    device = _device_for(rng, people, bp, b_ch)
    log.add(bp, b_t, b_ch, TY["purchase"], prod=product, qty=quantity, dev=device)

    # the session that ended in the online purchase
    online = np.isin(b_ch, BROWSE_CHANNELS) & (rng.random(len(bp)) < 0.75)
    _sessions(rng, people, catalog, log, bp[online], b_ch[online], b_t[online], kind="checkout",
              focus=product[online], device=device[online])

    # research in the days before, on any browsing channel the person has
    research = can_browse[bp] & (rng.random(len(bp)) < 0.45)
    repeats = 1 + (rng.random(len(bp)) < 0.35)
    rp = np.repeat(bp[research], repeats[research])
    r_focus = np.repeat(product[research], repeats[research])
    r_before = np.repeat(b_t[research], repeats[research])
    r_t = r_before - rng.uniform(HOUR, 5 * DAY, len(rp))
    r_ch = BROWSE_CHANNELS[_draw_rows(rng, people.browse_cum, rp)]
    _sessions(rng, people, catalog, log, rp, r_ch, r_t, kind="research", focus=r_focus)

    # Messenger orders are preceded by a short chat
    fb = b_ch == CH["facebook"]
    chats = rng.integers(1, 4, len(bp))
    cp = np.repeat(bp[fb], chats[fb])
    c_t = np.repeat(b_t[fb], chats[fb]) - rng.uniform(60, 6 * HOUR, len(cp))
    c_prod = np.where(rng.random(len(cp)) < 0.5, np.repeat(product[fb], chats[fb]), -1)
    log.add(cp, c_t, CH["facebook"], TY["message_replied"], prod=c_prod,
            aux=rng.integers(0, len(CHAT_TEXTS), len(cp)))


def _facebook_chats(rng, people: _People, catalog: _Catalog, clock: _Clock, log: _EventLog) -> None:
    """Questions on the Facebook page that do not turn into an order."""
    uses_fb = people.uses[:, CH["facebook"]]
    active = np.maximum(np.minimum(people.churn_t, clock.end) - people.join_t, 0.0)
    counts = rng.poisson(0.015 * active / DAY) * uses_fb
    cp = np.repeat(np.arange(people.n), counts)
    c_t = _Clock.local_day_start(people.join_t[cp] + rng.random(len(cp)) * active[cp])
    c_t = c_t + _activity_hours(rng, people.pref_hour, cp) * HOUR
    c_prod = np.where(rng.random(len(cp)) < 0.4, _pick_products(rng, people, catalog, cp, 0.7), -1)
    log.add(cp, c_t, CH["facebook"], TY["message_replied"], prod=c_prod,
            aux=rng.integers(0, len(CHAT_TEXTS), len(cp)))


def _sessions(rng, people: _People, catalog: _Catalog, log: _EventLog, sp, s_ch, s_t, kind: str,
              focus=None, device=None) -> None:
    """Expand sessions into page_view / product_view / add_to_cart events.

    `background` sessions start at `s_t` and cart a product now and then; `research` sessions start at
    `s_t` and end on the product bought later; `checkout` sessions end at `s_t` (the purchase) with a view
    and an add_to_cart of the bought product.
    """
    n = len(sp)
    if n == 0:
        return
    minimum = {"background": 1, "research": 2, "checkout": 3}[kind]
    length = np.clip(1 + rng.poisson(2.2, n), minimum, 10)
    first = np.concatenate([[0], np.cumsum(length)[:-1]])
    sess = np.repeat(np.arange(n), length)
    pos = np.arange(len(sess)) - first[sess]
    last = pos == length[sess] - 1
    gaps = np.where(pos == 0, 0.0, 5.0 + rng.exponential(40.0, len(sess)))
    offset = np.cumsum(gaps)
    offset -= offset[first][sess]
    duration = offset[first + length - 1]

    ty = np.where((pos > 0) & (rng.random(len(sess)) < 0.55), TY["product_view"], TY["page_view"])
    prod = np.where(ty == TY["product_view"], _pick_products(rng, people, catalog, sp[sess], 0.7), -1)
    if kind == "background":
        carts = (length >= 2) & (rng.random(n) < people.add_to_cart_prob[sp])
        cart_row = last & carts[sess]
        ty[cart_row] = TY["add_to_cart"]
        ty[np.roll(cart_row, -1)] = TY["product_view"]
        prod[cart_row] = prod[np.roll(cart_row, -1)] = _pick_products(rng, people, catalog,
                                                                      sp[sess][cart_row], 0.7)
        start = s_t
    elif kind == "research":
        ty[last] = TY["product_view"]
        prod[last] = focus
        start = s_t
    else:
        before_last = np.roll(last, -1)
        ty[last], ty[before_last] = TY["add_to_cart"], TY["product_view"]
        prod[last] = prod[before_last] = focus
        start = s_t - duration - rng.uniform(30, 300, n)

    ch = s_ch[sess]
    if device is None:
        device = _device_for(rng, people, sp, s_ch)
    aux = np.where((pos == 0) & (kind == "background"), AUX_SESSION_START, -1)
    qty = np.where(ty == TY["add_to_cart"], 1, -1)
    log.add(sp[sess], start[sess] + offset, ch, ty, prod=prod, qty=qty, dev=device[sess], aux=aux)


def _activity_hours(rng: np.random.Generator, pref_hour: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A local hour (float) for self-initiated activity: usually near one of the person's reading hours,
    otherwise the shop-wide daily curve."""
    n = len(p)
    own = pref_hour[p, rng.integers(0, len(SEND_CHANNELS), n)] + 0.5 + rng.normal(0, 1.3, n)
    generic = rng.choice(24, size=n, p=GENERIC_HOUR_WEIGHTS / GENERIC_HOUR_WEIGHTS.sum()) + rng.random(n)
    return np.where(rng.random(n) < 0.65, own, generic) % 24


def _at_activity_hour(rng, pref_hour: np.ndarray, p: np.ndarray, t: np.ndarray, not_before=None):
    """Move each moment to an activity hour of its local day (the next day if that would be too early),
    so that sign-ups and opt-ins do not happen at 4 a.m."""
    moved = _Clock.local_day_start(t) + _activity_hours(rng, pref_hour, p) * HOUR
    if not_before is None:
        return moved
    return np.where(moved < not_before, moved + DAY, moved)


def _pick_products(rng, people: _People, catalog: _Catalog, p: np.ndarray, favourite_share: float):
    """Mostly from the person's favourite categories, by product popularity within the category."""
    n = len(p)
    fav = people.favourites[p]
    n_fav = (fav >= 0).sum(axis=1)
    category = fav[np.arange(n), (rng.random(n) * n_fav).astype(np.int64)]
    elsewhere = rng.random(n) >= favourite_share
    category[elsewhere] = rng.choice(len(CATEGORIES), size=int(elsewhere.sum()),
                                     p=BROWSING_CATEGORY_WEIGHTS / BROWSING_CATEGORY_WEIGHTS.sum())
    u = rng.random(n)
    product = np.empty(n, dtype=np.int64)
    for c in range(len(CATEGORIES)):
        rows = category == c
        product[rows] = catalog.by_category[c][np.searchsorted(catalog.cumulative[c], u[rows], side="right")]
    return product


def _draw_rows(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per entry of `rows`, each from its own row of cumulative probabilities."""
    u = rng.random(len(rows))
    return np.minimum((u[:, None] >= cum[rows]).sum(axis=1), cum.shape[1] - 1)


def _device_for(rng: np.random.Generator, people: _People, p: np.ndarray, ch: np.ndarray) -> np.ndarray:
    """Which of the person's devices a web/app event came from (-1 for other channels)."""
    first = people.device_channel[p, 0] == ch
    second = people.device_channel[p, 1] == ch
    device = np.where(first & second, (rng.random(len(p)) < 0.35).astype(np.int64), np.where(first, 0, 1))
    return np.where(first | second, device, -1)


def _identify_events(rng, people: _People, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sign-up or login: on most devices, soon after its first session, the cookie meets an email or
    phone. A device that never identifies stays an anonymous island for identity resolution."""
    device_rows = raw["dev"] >= 0
    p, dev, t = raw["p"][device_rows], raw["dev"][device_rows], raw["t"][device_rows]
    first_seen = np.full((people.n, 2), NEVER)
    np.minimum.at(first_seen, (p, dev), t)
    pp, dd = np.nonzero(np.isfinite(first_seen))
    chance = np.where(dd == 0, 0.85, 0.60)
    reachable = people.has_email[pp] | people.has_phone[pp]
    keep = reachable & (rng.random(len(pp)) < chance)
    pp, dd = pp[keep], dd[keep]
    t_id = first_seen[pp, dd] + rng.uniform(20, 300, len(pp))
    log = _EventLog()
    log.add(pp, t_id, people.device_channel[pp, dd], TY["identify"], dev=dd)
    return log.concat()


def _consent_events(people: _People, log: _EventLog) -> None:
    """Opt-in and opt-out events, one per channel and direction."""
    kinds = {"zalo_oa": ("follow", "unfollow"), "email": ("subscribe", "unsubscribe"),
             "sms": ("consent_granted", "consent_revoked")}
    for j, name in enumerate(SEND_CHANNELS):
        opt_in, opt_out = kinds[name]
        joined = np.flatnonzero(np.isfinite(people.consent_t[:, j]))
        log.add(joined, people.consent_t[joined, j], CH[name], TY[opt_in])
        left = np.flatnonzero(np.isfinite(people.unsub_t[:, j]))
        log.add(left, people.unsub_t[left, j], CH[name], TY[opt_out])


# ========================================================================================================
# campaigns
# ========================================================================================================


@dataclass(frozen=True)
class _Messages:
    """One entry per send; `campaign` indexes `campaign_ids`."""

    campaign: np.ndarray
    channel: np.ndarray
    campaign_ids: np.ndarray


def _campaigns(rng, people: _People, clock: _Clock, log: _EventLog) -> _Messages:
    """The shop's sends and how people answer them.

    Marketers send at a few habitual hours (9:00, 12:00, 20:00) and only now and then elsewhere, so the
    history is confounded by the send hour. Whether and when a person opens depends on how far the send
    hour is from their own reading hour on that channel; that is the signal a send-time model must find.
    """
    camp_t, camp_ch = _campaign_schedule(rng, clock, SEND_CHANNELS)
    send_p, send_c = [], []
    for c in range(len(camp_t)):
        j = camp_ch[c]
        eligible = (people.consent_t[:, j] <= camp_t[c]) & (people.unsub_t[:, j] > camp_t[c]) & (
            people.join_t <= camp_t[c])
        audience = np.flatnonzero(eligible & (rng.random(people.n) < rng.uniform(0.35, 0.85)))
        send_p.append(audience)
        send_c.append(np.full(len(audience), c))
    p = np.concatenate(send_p) if send_p else np.empty(0, np.int64)
    c = np.concatenate(send_c) if send_c else np.empty(0, np.int64)
    j = camp_ch[c]
    ch = np.array([CH[name] for name in SEND_CHANNELS])[j]
    msg = np.arange(len(p))
    n = len(p)

    t_sent = camp_t[c] + rng.integers(0, SEND_SPREAD, n)
    delivered = rng.random(n) < np.array([DELIVERY_RATE[name] for name in SEND_CHANNELS])[j]
    t_deliv = t_sent + rng.integers(1, 30, n)
    log.add(p, t_sent, ch, TY["message_sent"], msg=msg)
    log.add(p[delivered], t_deliv[delivered], ch[delivered], TY["message_delivered"], msg=msg[delivered])

    pref = people.pref_hour[p, j]
    distance = circular_distance(_Clock.local_hour(t_sent), pref + READING_OFFSET)
    channel_factor = np.array([CHANNEL_FACTOR[name] for name in SEND_CHANNELS])[j]
    p_open = open_probability(people.open_base[p], channel_factor, distance)
    opened = delivered & (rng.random(n) < p_open)
    t_open = _open_times(rng, t_deliv, pref, distance)
    log.add(p[opened], t_open[opened], ch[opened], TY["message_opened"], msg=msg[opened])

    machine = delivered & (j == 1) & people.machine_opener[p] & (rng.random(n) < 0.95)
    log.add(p[machine], t_deliv[machine] + rng.integers(0, 2, int(machine.sum())), ch[machine],
            TY["message_opened"], msg=msg[machine], aux=AUX_MACHINE_OPEN)

    clicked = opened & (rng.random(n) < CLICK_GIVEN_OPEN[people.segment[p]])
    t_click = t_open + 5 + rng.exponential(90.0, n)
    log.add(p[clicked], t_click[clicked], ch[clicked], TY["message_clicked"], msg=msg[clicked])

    replied = opened & (j == 0) & (rng.random(n) < 0.04)
    log.add(p[replied], (t_open + 20 + rng.exponential(600.0, n))[replied], ch[replied],
            TY["message_replied"], msg=msg[replied], aux=rng.integers(0, len(OA_REPLY_TEXTS), n)[replied])

    # A click lands on the website, tagged with the campaign's UTM parameters.
    has_web = (people.device_channel[p] == CH["web"]).any(axis=1)
    lands = clicked & has_web
    land_dev = _device_for(rng, people, p[lands], np.full(int(lands.sum()), CH["web"]))
    log.add(p[lands], t_click[lands] + rng.integers(1, 8, int(lands.sum())), CH["web"], TY["page_view"],
            msg=msg[lands], dev=land_dev)

    campaign_ids = np.array([f"cmp_{k + 1:04d}" for k in range(len(camp_t))], dtype=object)
    return _Messages(campaign=c, channel=j, campaign_ids=campaign_ids)


def _campaign_schedule(rng, clock: _Clock, channels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Campaign start times on `channels` and their channel (index into PLAN_CHANNELS), in time order."""
    times, codes = [], []
    for name in channels:
        days = np.flatnonzero(rng.random(clock.days) < CAMPAIGNS_PER_DAY[name])
        habitual = rng.choice([9, 12, 20], size=len(days), p=[0.45, 0.2, 0.35])
        hour = np.where(rng.random(len(days)) < 0.85, habitual, rng.integers(8, 22, len(days)))
        minute = rng.choice([0, 0, 0, 0, 15, 30, 45], size=len(days))
        times.append(clock.midnight0 + days * DAY + hour * HOUR + minute * 60)
        codes.append(np.full(len(days), PLAN_CHANNELS.index(name)))
    t, ch = np.concatenate(times), np.concatenate(codes)
    order = np.argsort(t, kind="stable")
    return t[order].astype(np.int64), ch[order]


def _open_times(rng, t_deliv: np.ndarray, pref: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Near the reading hour a message is read within minutes; otherwise it waits for the next reading
    hour (today or tomorrow), or is picked up at some random later moment."""
    n = len(t_deliv)
    soon = t_deliv + 30 + rng.exponential(15 * 60.0, n)
    next_read = _Clock.local_day_start(t_deliv) + (pref + rng.random(n)) * HOUR
    next_read = np.where(next_read < t_deliv, next_read + DAY, next_read)
    whenever = t_deliv + 60 + rng.exponential(3 * HOUR, n)
    later = np.where(rng.random(n) < 0.75, next_read, whenever)
    return np.where(distance <= 1.5, soon, later)


# ========================================================================================================
# Zalo accounts and ZNS
# ========================================================================================================


def _zalo_accounts(rng, people: _People) -> np.ndarray:
    """Who has a Zalo account. Everyone the shop meets on its OA or Mini App does; among everyone else just
    enough do that ZNS_RATES["zalo_with_phone"] of the phone owners have one."""
    known = people.uses[:, CH["zalo_oa"]] | people.uses[:, CH["zalo_mini_app"]]
    known_share = known[people.has_phone].mean() if people.has_phone.any() else 1.0
    rest = (ZNS_RATES["zalo_with_phone"] - known_share) / (1.0 - known_share) if known_share < 1 else 0.0
    return known | (rng.random(people.n) < rest)


def _zns_consents(rng, people: _People, raw: dict[str, np.ndarray], clock: _Clock) -> dict[str, np.ndarray]:
    """ZNS consent events, logged with the phone.

    Checkout forms and cashiers offer order news "qua Zalo"; a ticked box grants ZNS consent for the phone
    given at that purchase. Nobody says that it takes a Zalo account, so people without one tick it too, and
    what is sent to them never arrives. A few withdraw later, mostly those about to leave. `raw` is the
    shop's log in time order.
    """
    buys = np.flatnonzero((raw["ty"] == TY["purchase"]) & people.has_phone[raw["p"]])
    ticked = buys[rng.random(len(buys)) < ZNS_RATES["consent_per_purchase"]]
    who, first = np.unique(raw["p"][ticked], return_index=True)
    granted = raw["t"][ticked[first]] + rng.uniform(5, 120, len(who))
    churn_t = people.churn_t[who]
    churner = np.isfinite(churn_t)
    leaves = people.has_zalo[who] & (
        rng.random(len(who)) < np.where(churner, ZNS_RATES["revoke_churner"], ZNS_RATES["revoke"]))
    before_churn = np.maximum(churn_t - rng.uniform(0, 14 * DAY, len(who)), granted + HOUR)
    later = np.maximum(np.minimum(churn_t, clock.end) - granted - HOUR, 0.0)
    anytime = granted + HOUR + rng.random(len(who)) * later
    revoked = np.where(churner, before_churn, anytime)
    log = _EventLog()
    log.add(who, granted, CH[ZNS], TY["consent_granted"])
    log.add(who[leaves], revoked[leaves], CH[ZNS], TY["consent_revoked"])
    return log.concat()


def _zns_campaigns(rng, people: _People, consents: dict[str, np.ndarray], clock: _Clock, log: _EventLog,
                   messages: _Messages) -> _Messages:
    """A few ZNS campaigns (ZNS is paid per message), sent by phone to people whose latest ZNS consent
    event is a grant, and how they answer.

    Zalo delivers a ZNS only to a phone with a Zalo account. Opens follow the other channels' model with
    the ZNS channel factor and reading hour (`_People.zns_hour`). Returns `messages` with these sends
    appended: their message and campaign numbers continue after the others'.
    """
    camp_t, _ = _campaign_schedule(rng, clock, (ZNS,))
    granted = _first_time(consents, TY["consent_granted"], people.n)
    revoked = _first_time(consents, TY["consent_revoked"], people.n)
    send_p, send_c = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for c in range(len(camp_t)):
        eligible = (granted <= camp_t[c]) & (revoked > camp_t[c] + SEND_SPREAD) & (people.join_t <= camp_t[c])
        audience = np.flatnonzero(eligible & (rng.random(people.n) < rng.uniform(0.35, 0.85)))
        send_p.append(audience)
        send_c.append(np.full(len(audience), c))
    p, c = np.concatenate(send_p), np.concatenate(send_c)
    n = len(p)
    msg = len(messages.campaign) + np.arange(n)
    ch = CH[ZNS]

    t_sent = camp_t[c] + rng.integers(0, SEND_SPREAD, n)
    delivered = people.has_zalo[p] & (rng.random(n) < DELIVERY_RATE[ZNS])
    t_deliv = t_sent + rng.integers(1, 30, n)
    log.add(p, t_sent, ch, TY["message_sent"], msg=msg)
    log.add(p[delivered], t_deliv[delivered], ch, TY["message_delivered"], msg=msg[delivered])

    pref = people.zns_hour[p]
    distance = circular_distance(_Clock.local_hour(t_sent), pref + READING_OFFSET)
    p_open = open_probability(people.open_base[p], CHANNEL_FACTOR[ZNS], distance)
    opened = delivered & (rng.random(n) < p_open)
    t_open = _open_times(rng, t_deliv, pref, distance)
    log.add(p[opened], t_open[opened], ch, TY["message_opened"], msg=msg[opened])
    # Button clicks only: a landing page_view would be a web row, and web rows are numbered in the main log.
    clicked = opened & (rng.random(n) < CLICK_GIVEN_OPEN[people.segment[p]])
    t_click = t_open + 5 + rng.exponential(90.0, n)
    log.add(p[clicked], t_click[clicked], ch, TY["message_clicked"], msg=msg[clicked])

    first = len(messages.campaign_ids)
    ids = np.array([f"cmp_{first + k + 1:04d}" for k in range(len(camp_t))], dtype=object)
    return _Messages(campaign=np.concatenate([messages.campaign, first + c]),
                     channel=np.concatenate([messages.channel, np.full(n, PLAN_CHANNELS.index(ZNS))]),
                     campaign_ids=np.concatenate([messages.campaign_ids, ids]))


def _first_time(table: dict[str, np.ndarray], ty: int, n: int) -> np.ndarray:
    """Per person, the first time of an event of type `ty` in `table`; NEVER without one."""
    out = np.full(n, NEVER)
    rows = table["ty"] == ty
    np.minimum.at(out, table["p"][rows], table["t"][rows].astype(float))
    return out


def _consenting_at_end(raw: dict[str, np.ndarray], channel: str, grant: str, revoke: str, n: int) -> np.ndarray:
    """Per person, whether the latest `grant` or `revoke` event on `channel` in the time-ordered log is a
    grant (False without either), as the profiles read consent."""
    rows = np.flatnonzero((raw["ch"] == CH[channel]) & np.isin(raw["ty"], [TY[grant], TY[revoke]]))
    p, ty = raw["p"][rows][::-1], raw["ty"][rows][::-1]
    who, latest = np.unique(p, return_index=True)
    out = np.zeros(n, dtype=bool)
    out[who] = ty[latest] == TY[grant]
    return out


# ========================================================================================================
# rendering: integer log -> canonical events, as the sources would have written them
# ========================================================================================================


def _render(rng, links_rng, raw: dict[str, np.ndarray], people: _People, catalog: _Catalog,
            messages: _Messages) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    n = len(raw["t"])
    cols = {f: np.full(n, None, dtype=object) for f in CANONICAL_FIELDS}
    cols["channel"] = np.array(EVENT_CHANNELS, dtype=object)[raw["ch"]]
    cols["type"] = np.array(KNOWN_TYPES, dtype=object)[raw["ty"]]
    cols["ts"] = _render_timestamps(rng, raw)
    _render_identifiers(rng, raw, people, cols)
    owners = _render_hard_identifiers(links_rng, raw, people, cols)
    _render_names(rng, raw, people, cols)
    _render_products(rng, raw, catalog, cols)
    _render_messages(raw, messages, cols)
    _render_properties(rng, raw, people, messages, cols)
    cols["event_id"] = _render_event_ids(rng, raw)
    return pd.DataFrame({f: pd.Series(cols[f], dtype=object) for f in CANONICAL_FIELDS}), owners


def _render_timestamps(rng, raw) -> np.ndarray:
    """ISO 8601 at +07:00 for most sources; the email provider's webhooks in UTC; POS exports as local
    `dd/mm/yyyy HH:MM`; part of the app SDK's events as epoch milliseconds."""
    t, ch, ty = raw["t"], raw["ch"], raw["ty"]
    n = len(t)
    local = np.datetime_as_string((t + LOCAL_OFFSET).astype("datetime64[s]"))
    utc = np.datetime_as_string(t.astype("datetime64[s]"))
    out = np.array([s + LOCAL_SUFFIX for s in local], dtype=object)
    webhook = (ch == CH["email"]) & np.isin(ty, [TY["message_delivered"], TY["message_opened"],
                                                 TY["message_clicked"]])
    out[webhook] = [s + "Z" for s in utc[webhook]]
    pos = ch == CH["pos"]
    out[pos] = [f"{s[8:10]}/{s[5:7]}/{s[0:4]} {s[11:16]}" for s in local[pos]]
    epoch = (ch == CH["app"]) & (rng.random(n) < 0.12)
    out[epoch] = (t[epoch] * 1000 + rng.integers(0, 1000, int(epoch.sum()))).tolist()
    return out


def _render_identifiers(rng, raw, people: _People, cols: dict[str, np.ndarray]) -> None:
    """Each source knows only its own identifiers; a few event kinds carry a second one, and those are
    the links identity resolution has to find."""
    p, ch, ty, dev = raw["p"], raw["ch"], raw["ty"], raw["dev"]
    n = len(p)
    u = rng.random(n)
    on = {name: ch == CH[name] for name in EVENT_CHANNELS}
    has_phone, has_email = people.has_phone[p], people.has_email[p]

    device_rows = dev >= 0
    cols["anonymous_id"][device_rows] = people.anonymous_id[p[device_rows], dev[device_rows]]
    for field, channel in (("zalo_user_id", "zalo_oa"), ("zalo_app_user_id", "zalo_mini_app"),
                           ("fb_psid", "facebook")):
        rows = on[channel]
        cols[field][rows] = getattr(people, field)[p[rows]]

    identify = ty == TY["identify"]
    by_email = identify & has_email & ((u < 0.6) | ~has_phone)
    by_phone = identify & ~by_email & has_phone
    purchase = ty == TY["purchase"]
    card = people.pos_customer_id[p]
    pos_card = on["pos"] & pd.notna(card) & (rng.random(n) < 0.85)
    pos_phone = on["pos"] & has_phone & ((u < 0.9) | ~pos_card)
    pos_card |= on["pos"] & ~pos_phone
    cols["pos_customer_id"][pos_card] = card[pos_card]

    wants_phone = (
        by_phone | on["sms"] | on[ZNS] | pos_phone
        | (on["zalo_oa"] & (ty == TY["follow"]) & (u < 0.8))
        | (on["zalo_mini_app"] & (u < np.where(purchase, 0.7, 0.08)))
        | (on["facebook"] & (u < np.where(purchase, 0.6, 0.3)))
    ) & has_phone
    fmt_cum = np.cumsum([PHONE_FORMAT_BY_CHANNEL[c] for c in EVENT_CHANNELS], axis=1)
    fmt_cum /= fmt_cum[:, -1:]
    fmt = _draw_rows(rng, fmt_cum, ch)
    cols["phone"][wants_phone] = people.phone[p[wants_phone], fmt[wants_phone]]

    wants_email = (on["email"] | by_email) & has_email
    tidy = rng.random(n) < np.where(identify, 0.70, 0.96)
    variant = np.where(tidy, 0, rng.integers(1, 5, n))
    cols["email"][wants_email] = people.email[p[wants_email], variant[wants_email]]


def _render_hard_identifiers(rng, raw, people: _People, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The links real shops get and the mess identity resolution must survive; returns true owners.

    Links: web and app checkouts ask for a delivery phone (and often an email), sign-up forms ask for
    both, the newsletter form asks for a phone, and some POS customer records hold an email. Mess: a
    second SIM, the shop's hotline typed at the till for customers who give no number, one-digit typos
    (usually a number nobody has), a POS lookup that picked another customer, and junk emails at sign-up.
    Returns per-row owners for `phone` and `email` where the value is not the event person's own
    (see `_identities_frame`).
    """
    p, ch, ty = raw["p"], raw["ch"], raw["ty"]
    n = len(p)
    on = {name: ch == CH[name] for name in EVENT_CHANNELS}
    purchase, identify = ty == TY["purchase"], ty == TY["identify"]
    has_phone, has_email = people.has_phone[p], people.has_email[p]
    u = rng.random((n, 8))  # one column per decision
    fmt_cum = np.cumsum([PHONE_FORMAT_BY_CHANNEL[c] for c in EVENT_CHANNELS], axis=1)
    fmt = _draw_rows(rng, fmt_cum / fmt_cum[:, -1:], ch)
    email_variant = np.where(rng.random(n) < 0.9, 0, rng.integers(1, 5, n))
    phone, email = cols["phone"], cols["email"]
    phone_owner = np.full(n, None, dtype=object)
    email_owner = np.full(n, None, dtype=object)

    checkout = purchase & (on["web"] | on["app"])
    both = identify & (u[:, 2] < 0.35)
    newsletter = on["email"] & (ty == TY["subscribe"])
    add_phone = (checkout & (u[:, 0] < 0.9)) | both | (newsletter & (u[:, 3] < 0.5))
    add_phone &= has_phone & pd.isna(phone)
    phone[add_phone] = people.phone[p[add_phone], fmt[add_phone]]
    add_email = (checkout & (u[:, 1] < 0.5)) | (on["pos"] & purchase & (u[:, 1] < 0.15)) | both
    add_email &= has_email & pd.isna(email)
    email[add_email] = people.email[p[add_email], email_variant[add_email]]

    second = (pd.notna(people.phone2[p, 0]) & pd.notna(phone) & ~on["zalo_oa"] & ~on["sms"] & ~on[ZNS]
              & (u[:, 4] < HARD_CASE_RATES["second_phone_row"]))
    phone[second] = people.phone2[p[second], fmt[second]]

    till = on["pos"] & purchase & (u[:, 5] < HARD_CASE_RATES["hotline"])
    phone[till] = np.array(SHOP_HOTLINES, dtype=object)[rng.integers(0, len(SHOP_HOTLINES), int(till.sum()))]
    phone_owner[till] = SHARED

    owner_of = {d: pid for pid, d in zip(people.pid, people.phone[:, 0]) if d is not None}
    owner_of.update({d: pid for pid, d in zip(people.pid, people.phone2[:, 0]) if d is not None})
    typed = on["pos"] & pd.notna(phone) & ~till
    typo = np.flatnonzero(typed & (u[:, 6] < HARD_CASE_RATES["typo"]))
    where, shift = rng.integers(3, 10, len(typo)), rng.integers(1, 10, len(typo))
    for i, k, s in zip(typo, where, shift):
        d = people.phone[p[i], 0]
        wrong = d[:k] + str((int(d[k]) + s) % 10) + d[k + 1:]
        phone[i] = _phone_variants(wrong)[fmt[i]]
        phone_owner[i] = owner_of.get(wrong, NOBODY)
    picked = np.flatnonzero(typed & (u[:, 6] > 1 - HARD_CASE_RATES["wrong_customer"]))
    others = np.flatnonzero(people.has_phone)
    for i, j in zip(picked, others[rng.integers(0, len(others), len(picked))]):
        if j != p[i]:
            phone[i] = people.phone[j, fmt[i]]
            phone_owner[i] = people.pid[j]

    junk = identify & pd.notna(email) & (u[:, 7] < HARD_CASE_RATES["junk_email"])
    email[junk] = np.array(JUNK_EMAILS, dtype=object)[rng.integers(0, len(JUNK_EMAILS), int(junk.sum()))]
    email_owner[junk] = SHARED
    return {"phone": phone_owner, "email": email_owner}


def _second_phones(rng: np.random.Generator, people: _People) -> np.ndarray:
    """A second SIM (dual-SIM phones are common in Vietnam) for a few phone owners, in every notation."""
    out = np.full((people.n, len(PHONE_FORMATS)), None, dtype=object)
    has = people.has_phone & (rng.random(people.n) < HARD_CASE_RATES["second_phone"])
    taken = set(people.phone[people.has_phone, 0])
    prefixes = list(MOBILE_PREFIXES)
    for i in np.flatnonzero(has):
        while True:
            d = f"{prefixes[rng.integers(len(prefixes))]}{int(rng.integers(10_000_000)):07d}"
            if d not in taken:
                break
        taken.add(d)
        out[i] = _phone_variants(d)
    return out


def _render_names(rng, raw, people: _People, cols) -> None:
    """Names where a human typed or a platform shares one: sign-ups, Zalo follows (display names often in
    given-family order), POS records (sometimes in capitals) and Messenger orders."""
    p, ch, ty = raw["p"], raw["ch"], raw["ty"]
    n = len(p)
    u, style_u = rng.random(n), rng.random(n)
    purchase = ty == TY["purchase"]
    rows = ((ty == TY["identify"]) & (u < 0.9)) | ((ty == TY["follow"]) & (u < 0.85)) | (
        (ch == CH["pos"]) & purchase & (u < 0.6)) | ((ch == CH["facebook"]) & purchase & (u < 0.8))
    style = np.zeros(n, dtype=np.int64)
    style[(ch == CH["pos"]) & (style_u < 0.2)] = 1
    style[np.isin(ch, [CH["zalo_oa"], CH["facebook"]]) & (style_u < 0.35)] = 2
    cols["name"][rows] = people.name[p[rows], style[rows]]


def _render_products(rng, raw, catalog: _Catalog, cols) -> None:
    """Product fields, quantities and money. Shops type money into POS and chats in many ways."""
    prod, qty, ty, ch = raw["prod"], raw["qty"], raw["ty"], raw["ch"]
    has = prod >= 0
    cols["product_id"][has] = catalog.ids[prod[has]]
    cols["product_name"][has] = catalog.name[prod[has]]
    cols["category"][has] = np.array(CATEGORIES, dtype=object)[catalog.category[prod[has]]]
    counted = qty > 0
    cols["quantity"][counted] = qty[counted].tolist()

    purchase = np.flatnonzero(ty == TY["purchase"])
    amount = catalog.price[prod[purchase]] * qty[purchase]
    text_share = np.select([ch[purchase] == CH["pos"], ch[purchase] == CH["facebook"]], [0.35, 0.30], 0.0)
    as_text = rng.random(len(purchase)) < text_share
    style = rng.integers(0, 4, len(purchase))
    values = amount.astype(object)
    values[as_text] = [_vnd_text(int(a), int(s)) for a, s in zip(amount[as_text], style[as_text])]
    cols["amount"][purchase] = values
    with_currency = purchase[rng.random(len(purchase)) < 0.9]
    cols["currency"][with_currency] = "VND"


def _render_messages(raw, messages: _Messages, cols) -> None:
    msg, ty = raw["msg"], raw["ty"]
    rows = (msg >= 0) & (ty != TY["page_view"])
    cols["message_id"][rows] = [f"msg_{m + 1:07d}" for m in msg[rows]]
    cols["campaign_id"][rows] = messages.campaign_ids[messages.campaign[msg[rows]]]


def _render_properties(rng, raw, people: _People, messages: _Messages, cols) -> None:
    """Everything outside the flat fields: UTM tags, store, app version, chat text."""
    p, ch, ty, msg, aux = raw["p"], raw["ch"], raw["ty"], raw["msg"], raw["aux"]
    n = len(p)
    u = rng.random(n)
    props = cols["properties"]

    landing = np.flatnonzero((ty == TY["page_view"]) & (msg >= 0))
    for i in landing:
        m = msg[i]
        source, medium = UTM_BY_SEND_CHANNEL[messages.channel[m]]
        props[i] = {"utm_source": source, "utm_medium": medium,
                    "utm_campaign": str(messages.campaign_ids[messages.campaign[m]])}
    referred = np.flatnonzero((aux == AUX_SESSION_START) & (ty == TY["page_view"]) & (u < 0.3))
    ref = rng.integers(0, len(REFERRERS), len(referred))
    for i, r in zip(referred, ref):
        props[i] = {"utm_source": REFERRERS[r]}
    for i in np.flatnonzero((ch == CH["app"]) & (u > 0.85) & (msg < 0)):
        props[i] = {"os": str(people.os[p[i]]), "app_version": "3.4.1" if i % 3 else "3.3.0"}
    for i in np.flatnonzero((ch == CH["pos"]) & (u < 0.8)):
        props[i] = {"store": STORES[people.store[p[i]]]}
    for i in np.flatnonzero(ty == TY["message_replied"]):
        texts = CHAT_TEXTS if ch[i] == CH["facebook"] else OA_REPLY_TEXTS
        props[i] = {"text": texts[aux[i] % len(texts)]}


def _render_event_ids(rng, raw) -> np.ndarray:
    """`evt_<channel>_<n>` numbered per channel in time order; POS exports often have none, other sources
    occasionally lose them (about a tenth of rows overall)."""
    ch = raw["ch"]
    n = len(ch)
    out = np.full(n, None, dtype=object)
    missing = rng.random(n) < np.where(ch == CH["pos"], 0.5, 0.09)
    for c, name in enumerate(EVENT_CHANNELS):
        rows = np.flatnonzero(ch == c)
        keep = rows[~missing[rows]]
        numbers = np.arange(1, len(rows) + 1)[~missing[rows]]
        out[keep] = [f"evt_{name}_{k}" for k in numbers]
    return out


# ========================================================================================================
# ground truth and identities
# ========================================================================================================


def _truth_frame(people: _People, raw, clock: _Clock) -> pd.DataFrame:
    churned = np.isfinite(people.churn_t)
    churn_at = np.full(people.n, None, dtype=object)
    churn_at[churned] = _iso_local(people.churn_t[churned])
    fav_names = np.array(CATEGORIES, dtype=object)
    favourites = ["|".join(fav_names[f] for f in row if f >= 0) for row in people.favourites]
    channels = ["|".join(np.array(KNOWN_CHANNELS)[row]) for row in people.uses]
    return pd.DataFrame({
        "person_id": people.pid,
        "segment": SEGMENTS[people.segment],
        "purchase_rate": people.rate,
        "churn_at": pd.Series(churn_at, dtype=object),
        "preferred_hour_zalo_oa": people.pref_hour[:, 0],
        "preferred_hour_email": people.pref_hour[:, 1],
        "preferred_hour_sms": people.pref_hour[:, 2],
        "open_base": people.open_base,  # P(open) at the reading hour before the channel factor (synthetic.channels)
        "favourite_categories": favourites,
        "machine_opener": people.machine_opener,
        "n_events": np.bincount(raw["p"], minlength=people.n),
        "name": people.name[:, 0],
        "joined_at": _iso_local(people.join_t),
        "channels": channels,
        "has_zalo": people.has_zalo,
        "follows_oa": _consenting_at_end(raw, "zalo_oa", "follow", "unfollow", people.n),
        "consent_zalo_zns": _consenting_at_end(raw, ZNS, "consent_granted", "consent_revoked", people.n),
        "preferred_hour_zalo_zns": people.zns_hour,
    })


def _identities_frame(events: pd.DataFrame, p: np.ndarray, people: _People,
                      owners: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Every identifier value exactly as written in the events, with the person it belongs to.

    Usually that is the person the event is about; `owners` overrides it per row where the value is not
    theirs: `SHARED` for the shop's hotline and junk emails, `NOBODY` for a mistyped phone that is no
    one's, or the person whose phone a typo happened to hit.
    """
    owners = owners or {}
    parts = []
    for field in IDENTIFIER_FIELDS:
        values = events[field].to_numpy(dtype=object)
        rows = np.flatnonzero(pd.notna(values))
        if len(rows):
            person = people.pid[p[rows]]
            if field in owners:
                person = np.where(pd.notna(owners[field][rows]), owners[field][rows], person)
            parts.append(pd.DataFrame({"person_id": person, "id_type": field,
                                       "id_value": values[rows]}))
    if not parts:
        return pd.DataFrame({"person_id": [], "id_type": [], "id_value": []}, dtype=object)
    frame = pd.concat(parts, ignore_index=True).drop_duplicates()
    return frame.sort_values(["person_id", "id_type", "id_value"], ignore_index=True)


# ========================================================================================================
# small helpers
# ========================================================================================================


def _write_jsonl(events: pd.DataFrame, path: Path) -> None:
    """One event per line with only the keys that have a value; Vietnamese stays readable (UTF-8)."""
    fields = list(events.columns)
    columns = [events[f].to_numpy(dtype=object, na_value=None) for f in fields]
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        batch: list[str] = []
        for row in zip(*columns):
            batch.append(encode({k: v for k, v in zip(fields, row) if v is not None}))
            if len(batch) == 50_000:
                fh.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            fh.write("\n".join(batch) + "\n")


def _vnd_text(amount: int, style: int) -> str:
    """`1.200.000đ`, `1200k`, `1,2tr` or `1.200.000 VNĐ`: all exactly `amount` đồng."""
    dotted = f"{amount:,}".replace(",", ".")
    if style == 0:
        return f"{dotted}đ"
    if style == 1 or (style == 2 and amount < 1_000_000):
        return f"{amount // 1000}k"
    if style == 2:
        millions = f"{amount / 1_000_000:.3f}".rstrip("0").rstrip(".").replace(".", ",")
        return f"{millions}tr"
    return f"{dotted} VNĐ"


def _iso_local(t: np.ndarray) -> list[str]:
    local = np.datetime_as_string((np.floor(t).astype(np.int64) + LOCAL_OFFSET).astype("datetime64[s]"))
    return [s + LOCAL_SUFFIX for s in local]


def _uuid4(raw: np.ndarray) -> str:
    b = bytearray(raw.tobytes())
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ascii(text: str) -> str:
    """Lower-case ASCII for email local parts: drop the diacritics, and đ is d."""
    stripped = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return stripped.replace("đ", "d").replace("Đ", "D").lower()


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)
