"""Deterministic generator of a realistic Magento 2 store (customers, addresses, orders) for sandboxes and benchmarks."""

from __future__ import annotations

import calendar
import functools
import gc
import random
import re
import time
from bisect import bisect
from dataclasses import dataclass, field
from itertools import accumulate

__all__ = ["StoreData", "generate_store", "STORES", "format_ts", "parse_ts"]


@dataclass
class StoreData:
    """Customers and orders exactly as Magento's REST API returns them (null keys omitted)."""

    customers: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)


# Two websites, one store view each; prices are global, so the base currency is USD everywhere
# and the EU store view only displays (and charges) EUR.
STORES: dict[int, dict] = {
    1: {"code": "default", "website_id": 1, "website_code": "base", "name": "Default Store View",
        "order_store_name": "Main Website\nMain Website Store\nDefault Store View",
        "order_currency": "USD", "rate": 1.0, "increment_prefix": ""},
    2: {"code": "eu", "website_id": 2, "website_code": "eu", "name": "EU Store View",
        "order_store_name": "EU Website\nEU Store\nEU Store View",
        "order_currency": "EUR", "rate": 0.92, "increment_prefix": "2"},
}
BASE_CURRENCY = "USD"
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
_SPAN_SECONDS = 540 * 86400  # the store's history after `start`

_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com", "post.example.net",
            "inbox.example.org")
# Skewed repeat-purchase distribution over 1..12 orders (mean about 2.4).
_ORDER_COUNT_CUM = list(accumulate((45, 22, 11, 7, 4, 3, 2, 2, 1.5, 1.2, 0.8, 0.5)))
# (state, status, weight, refund kind): closed = fully refunded, partial = partly refunded.
_ORDER_STATES = (
    ("complete", "complete", 68, None), ("complete", "complete", 5, "partial"),
    ("processing", "processing", 9, None), ("processing", "processing", 1, "partial"),
    ("new", "pending", 4, None), ("canceled", "canceled", 8, None),
    ("closed", "closed", 3, "full"), ("holded", "holded", 2, None),
)
_ORDER_STATE_CUM = list(accumulate(s[2] for s in _ORDER_STATES))


def _names(pairs: str) -> tuple[tuple[str, str], ...]:
    """Parse "Native:latin Native2:latin2" into (native, ascii transliteration) pairs."""
    return tuple(tuple(p.split(":")) for p in pairs.split())  # type: ignore[misc]


# Each locale: names as (native, ascii) pairs, a country with cities as
# (city, postcode or None, region_code or None, region or None, region_id), street pattern, phone pattern.
LOCALES: dict[str, dict] = {
    "en_US": dict(
        script="Latin", country="US", street_fmt="{n} {s}", phone="(###) ###-####",
        male=_names("James:james John:john Robert:robert Michael:michael William:william David:david Daniel:daniel Kevin:kevin"),
        female=_names("Mary:mary Patricia:patricia Jennifer:jennifer Linda:linda Elizabeth:elizabeth Susan:susan Emily:emily Ashley:ashley"),
        last=_names("Smith:smith Johnson:johnson Williams:williams Brown:brown Jones:jones Garcia:garcia Miller:miller "
                    "Davis:davis O'Brien:obrien Nguyen:nguyen Kim:kim Smith-Jones:smithjones"),
        cities=(("New York", "10001", "NY", "New York", 43), ("Los Angeles", "90012", "CA", "California", 12),
                ("Chicago", "60601", "IL", "Illinois", 23), ("Houston", "77002", "TX", "Texas", 57),
                ("Seattle", "98101", "WA", "Washington", 62), ("Miami", "33130", "FL", "Florida", 18),
                ("Calder", "49628-7978", "MI", "Michigan", 33)),
        streets=("Main St", "Oak Avenue", "Honey Bluff Parkway", "Maple Drive", "Sunset Blvd", "Elm Street"),
        companies=("Acme Corp", "Globex LLC", "Initech Inc.", "Northwind Traders", "Contoso Ltd")),
    "en_GB": dict(
        script="Latin", country="GB", street_fmt="{n} {s}", phone="+44 20 #### ####",
        male=_names("Oliver:oliver George:george Harry:harry Jack:jack Thomas:thomas"),
        female=_names("Olivia:olivia Amelia:amelia Isla:isla Emily:emily Sophie:sophie"),
        last=_names("Taylor:taylor Davies:davies Evans:evans Wilson:wilson Thomas:thomas Roberts:roberts O'Neill:oneill"),
        cities=(("London", "SW1A 1AA", None, None, 0), ("Manchester", "M1 1AE", None, None, 0),
                ("Edinburgh", "EH1 1YZ", None, "Scotland", 0), ("Bristol", "BS1 4DJ", None, None, 0)),
        streets=("High Street", "Station Road", "Church Lane", "Victoria Road"),
        companies=("Bramble & Co Ltd", "Thames Print plc", "Harrow Supplies Ltd")),
    "de_DE": dict(
        script="Latin", country="DE", street_fmt="{s} {n}", phone="+49 30 ########",
        male=_names("Jürgen:juergen Lukas:lukas Björn:bjoern Jörg:joerg Uwe:uwe Maximilian:maximilian"),
        female=_names("Käthe:kaethe Anna:anna Jördis:joerdis Lena:lena Sophie:sophie Bärbel:baerbel"),
        last=_names("Müller:mueller Schröder:schroeder Weiß:weiss Groß:gross Köhler:koehler Bäcker:baecker "
                    "Schmidt:schmidt Meyer:meyer"),
        cities=(("Berlin", "10115", None, "Berlin", 0), ("München", "80331", None, "Bayern", 0),
                ("Köln", "50667", None, "Nordrhein-Westfalen", 0), ("Düsseldorf", "40213", None, None, 0),
                ("Hamburg", "20095", None, "Hamburg", 0)),
        streets=("Hauptstraße", "Königsallee", "Schloßstraße", "Bahnhofstraße", "Goethestraße"),
        companies=("Müller & Söhne GmbH", "Druckerei Köhler KG", "Weiß Textil AG")),
    "fr_FR": dict(
        script="Latin", country="FR", street_fmt="{n} {s}", phone="+33 1 ## ## ## ##",
        male=_names("François:francois Jérôme:jerome Étienne:etienne Loïc:loic Hugo:hugo"),
        female=_names("Hélène:helene Zoé:zoe Chloé:chloe Léa:lea Anaïs:anais Céline:celine"),
        last=_names("Lefèvre:lefevre Dupré:dupre Girard:girard Bénard:benard Lemaître:lemaitre Moreau:moreau"),
        cities=(("Paris", "75001", None, None, 0), ("Lyon", "69001", None, None, 0),
                ("Marseille", "13001", None, None, 0), ("Orléans", "45000", None, None, 0),
                ("Besançon", "25000", None, None, 0)),
        streets=("rue de la Paix", "avenue des Champs-Élysées", "rue Saint-Honoré", "boulevard Haussmann"),
        companies=("Boulangerie Lefèvre SARL", "Atelier Dupré SAS", "Éditions Girard")),
    "es_ES": dict(
        script="Latin", country="ES", street_fmt="{s}, {n}", phone="+34 9## ### ###",
        male=_names("José:jose Ángel:angel Íñigo:inigo Sergio:sergio Javier:javier"),
        female=_names("María:maria Begoña:begona Lucía:lucia Sofía:sofia Inés:ines"),
        last=_names("García:garcia Núñez:nunez Pérez:perez Martínez:martinez Muñoz:munoz López:lopez"),
        cities=(("Madrid", "28001", None, "Madrid", 0), ("Barcelona", "08001", None, "Barcelona", 0),
                ("Sevilla", "41001", None, "Sevilla", 0), ("Málaga", "29001", None, "Málaga", 0),
                ("A Coruña", "15001", None, "A Coruña", 0)),
        streets=("Calle Mayor", "Avenida de la Constitución", "Calle de Alcalá", "Paseo de Gràcia"),
        companies=("Construcciones Núñez S.L.", "Imprenta García S.A.")),
    "pl_PL": dict(
        script="Latin", country="PL", street_fmt="{s} {n}", phone="+48 ### ### ###",
        male=_names("Łukasz:lukasz Wojciech:wojciech Paweł:pawel Michał:michal Piotr:piotr"),
        female=_names("Małgorzata:malgorzata Zofia:zofia Agnieszka:agnieszka Katarzyna:katarzyna"),
        last=_names("Wiśniewski:wisniewski Wójcik:wojcik Kowalczyk:kowalczyk Zieliński:zielinski Dąbrowski:dabrowski"),
        cities=(("Warszawa", "00-001", None, None, 0), ("Kraków", "30-001", None, None, 0),
                ("Łódź", "90-001", None, None, 0), ("Wrocław", "50-001", None, None, 0),
                ("Gdańsk", "80-001", None, None, 0)),
        streets=("ul. Marszałkowska", "ul. Długa", "ul. Piotrkowska", "al. Jerozolimskie"),
        companies=("Kowalczyk Sp. z o.o.", "Drukarnia Łódź S.A.")),
    "bg_BG": dict(
        script="Cyrillic", country="BG", street_fmt="{s} {n}", phone="+359 2 ### ####",
        male=_names("Георги:georgi Иван:ivan Димитър:dimitar Стоян:stoyan Николай:nikolay"),
        female=_names("Мария:maria Елена:elena Десислава:desislava Милена:milena Йорданка:yordanka"),
        last=_names("Иванов:ivanov Петров:petrov Георгиев:georgiev Димитров:dimitrov Николов:nikolov"),
        cities=(("София", "1000", None, None, 0), ("Пловдив", "4000", None, None, 0), ("Варна", "9000", None, None, 0)),
        streets=("бул. Витоша", "ул. Граф Игнатиев", "бул. Христо Ботев"),
        companies=("Балкан Принт ЕООД", "Иванов и син ООД")),
    "ru_RU": dict(
        script="Cyrillic", country="RU", street_fmt="{s}, д. {n}", phone="+7 495 ###-##-##",
        male=_names("Иван:ivan Дмитрий:dmitry Алексей:aleksey Сергей:sergey Андрей:andrey"),
        female=_names("Анна:anna Мария:maria Ольга:olga Екатерина:ekaterina Наталья:natalya"),
        last=_names("Иванов:ivanov Смирнов:smirnov Кузнецов:kuznetsov Попов:popov Соколов:sokolov"),
        cities=(("Москва", "101000", None, "Москва", 0), ("Санкт-Петербург", "190000", None, "Санкт-Петербург", 0),
                ("Казань", "420000", None, "Татарстан", 0)),
        streets=("ул. Тверская", "Невский проспект", "ул. Баумана"),
        companies=("ООО «Ромашка»", "АО «Печатный двор»")),
    "el_GR": dict(
        script="Greek", country="GR", street_fmt="{s} {n}", phone="+30 21# ### ####",
        male=_names("Γιώργος:giorgos Νίκος:nikos Δημήτρης:dimitris Κώστας:kostas Παναγιώτης:panagiotis"),
        female=_names("Μαρία:maria Ελένη:eleni Αικατερίνη:aikaterini Σοφία:sofia Δέσποινα:despoina"),
        last=_names("Παπαδόπουλος:papadopoulos Βλάχος:vlachos Αντωνίου:antoniou Γεωργίου:georgiou "
                    "Οικονόμου:oikonomou Καραγιάννης:karagiannis"),
        cities=(("Αθήνα", "105 57", None, "Αττική", 0), ("Θεσσαλονίκη", "546 21", None, None, 0),
                ("Πάτρα", "262 21", None, None, 0)),
        streets=("Οδός Ερμού", "Λεωφόρος Συγγρού", "Οδός Αιόλου"),
        companies=("Παπαδόπουλος Α.Ε.", "Εκτυπώσεις Βλάχος Ο.Ε.")),
    "ja_JP": dict(
        script="CJK", country="JP", street_fmt="{s}{n}", phone="03-####-####", house="{a}-{b}-{c}",
        male=_names("太郎:taro 健:ken 翔太:shota 大輔:daisuke 蓮:ren"),
        female=_names("花子:hanako 陽菜:hina さくら:sakura 美咲:misaki 結衣:yui"),
        last=_names("佐藤:sato 鈴木:suzuki 高橋:takahashi 田中:tanaka 渡辺:watanabe 山本:yamamoto"),
        cities=(("千代田区", "100-0001", None, "東京都", 0), ("大阪市", "530-0001", None, "大阪府", 0),
                ("横浜市", "220-0001", None, "神奈川県", 0), ("札幌市", "060-0001", None, "北海道", 0)),
        streets=("丸の内", "梅田", "みなとみらい", "大通西"),
        companies=("株式会社サンプル", "山本印刷株式会社")),
    "zh_CN": dict(
        script="CJK", country="CN", street_fmt="{s}{n}号", phone="+86 1## #### ####",
        male=_names("伟:wei 磊:lei 强:qiang 军:jun 浩然:haoran"),
        female=_names("芳:fang 娜:na 静:jing 秀英:xiuying 婷:ting"),
        last=_names("王:wang 李:li 张:zhang 刘:liu 陈:chen 杨:yang"),
        cities=(("上海市", "200000", None, "上海", 0), ("北京市", "100000", None, "北京", 0),
                ("广州市", "510000", None, "广东", 0), ("深圳市", "518000", None, "广东", 0)),
        streets=("南京东路", "长安街", "天河路", "深南大道"),
        companies=("北京示例科技有限公司", "上海印象贸易有限公司")),
    "ar_AE": dict(
        script="Arabic", country="AE", street_fmt="{n} {s}", phone="+971 5# ### ####",
        male=_names("محمد:mohammed أحمد:ahmed علي:ali عمر:omar يوسف:youssef"),
        female=_names("فاطمة:fatima عائشة:aisha مريم:maryam نور:nour ليلى:layla"),
        last=_names("الحسن:alhassan المنصوري:almansouri الهاشمي:alhashimi خليل:khalil حداد:haddad النجار:alnajjar"),
        # The UAE has no postcodes: the key is simply absent, as Magento omits nulls.
        cities=(("دبي", None, None, "دبي", 0), ("أبوظبي", None, None, "أبوظبي", 0), ("الشارقة", None, None, None, 0)),
        streets=("شارع الشيخ زايد", "شارع الوصل", "شارع الكورنيش"),
        companies=("شركة المثال للتجارة", "مطبعة الخليج ذ.م.م")),
    "hi_IN": dict(
        script="Devanagari", country="IN", street_fmt="{n}, {s}", phone="+91 98### #####",
        male=_names("राहुल:rahul अमित:amit विकास:vikas संजय:sanjay अर्जुन:arjun"),
        female=_names("प्रिया:priya अनीता:anita पूजा:pooja सुनीता:sunita दीपिका:deepika"),
        last=_names("शर्मा:sharma वर्मा:verma गुप्ता:gupta सिंह:singh कुमार:kumar पटेल:patel"),
        # Indian shoppers usually type addresses in English even with Devanagari names.
        cities=(("New Delhi", "110001", None, "Delhi", 0), ("Mumbai", "400001", None, "Maharashtra", 0),
                ("Jaipur", "302001", None, "Rajasthan", 0), ("Lucknow", "226001", None, "Uttar Pradesh", 0)),
        streets=("MG Road", "Connaught Place", "Linking Road", "Station Road"),
        companies=("शर्मा ट्रेडर्स", "Gupta Prints Pvt Ltd")),
}
# Locale mix per website: the base website sells worldwide, the EU website mostly in Europe.
_WEBSITE_LOCALES: dict[int, tuple[tuple[str, float], ...]] = {
    1: (("en_US", 50), ("es_ES", 5), ("de_DE", 3), ("fr_FR", 3), ("pl_PL", 2), ("ru_RU", 4), ("el_GR", 1),
        ("ja_JP", 7), ("zh_CN", 8), ("ar_AE", 8), ("hi_IN", 9)),
    2: (("de_DE", 22), ("fr_FR", 17), ("es_ES", 12), ("pl_PL", 10), ("en_GB", 10), ("el_GR", 9),
        ("bg_BG", 8), ("ar_AE", 4), ("zh_CN", 3), ("ja_JP", 2), ("hi_IN", 3)),
}
_WEBSITE_SHARE_BASE = 0.72
_NON_LATIN_TYPED_IN_LATIN = 0.25
_FREEZE_FROM = 100_000  # customers; smaller data sets stay under normal garbage collection  # some customers with a non-Latin name type it in Latin letters


def parse_ts(value: str) -> int:
    """'YYYY-MM-DD HH:MM:SS' (UTC) to epoch seconds."""
    return calendar.timegm(time.strptime(value, TS_FORMAT))


def format_ts(ts: int) -> str:
    """Epoch seconds to Magento's 'YYYY-MM-DD HH:MM:SS' (UTC)."""
    return time.strftime(TS_FORMAT, time.gmtime(ts))


@functools.lru_cache(maxsize=None)
def _phone_template(pattern: str) -> tuple[str, tuple[int, ...]]:
    """'(###) ###-####' -> ('({:03d}) {:03d}-{:04d}', (3, 3, 4)): one format call per phone number."""
    groups = tuple(len(g) for g in re.findall(r"#+", pattern))
    return re.sub(r"#+", lambda m: "{:0%dd}" % len(m.group()), pattern.replace("{", "{{").replace("}", "}}")), groups


def _digits(rng: random.Random, pattern: str) -> str:
    template, groups = _phone_template(pattern)
    return template.format(*(int(rng.random() * 10**g) for g in groups))


def _feminine_surname(country: str, native: str, latin: str) -> tuple[str, str]:
    """Slavic surnames take a feminine form (Иванов -> Иванова, Wiśniewski -> Wiśniewska)."""
    if country in ("BG", "RU"):
        return native + "а", latin + "a"
    if country == "PL" and native.endswith("ski"):
        return native[:-1] + "a", latin[:-1] + "a"
    return native, latin


def _pick(rng: random.Random, seq):  # faster than rng.choice in the hot loop
    return seq[int(rng.random() * len(seq))]


class _Generator:
    """One generation run; state lives here so each step stays a small method."""

    def __init__(self, n: int, seed: int, start: str) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.t0 = parse_ts(start)
        self.t_end = self.t0 + _SPAN_SECONDS
        self.customers: list[dict] = []
        self.buyers: list[tuple[int, int]] = []  # (customer id, created ts)
        self.emails: set[str] = set()
        self.next_address_id = 1
        self.regions: dict[tuple, dict] = {}
        self.locale_tables = {
            w: ([k for k, _ in mix], list(accumulate(wt for _, wt in mix))) for w, mix in _WEBSITE_LOCALES.items()
        }
        self.import_n = max(1, n // 20)  # a legacy import: these rows share one created_at second
        self.mass_update_ts = self.t0 + int(_SPAN_SECONDS * 0.6)  # an admin mass action: shared updated_at

    # ---- customers -------------------------------------------------------------------------------
    def run(self) -> StoreData:
        for cid in range(1, self.n + 1):
            self.customers.append(self._customer(cid))
        self.emails.clear()  # only needed while emails are drawn
        _Messiness(self.rng, self.customers).apply()
        orders = _Orders(self).build()
        return StoreData(customers=self.customers, orders=orders)

    def _created_ts(self, cid: int) -> int:
        if cid <= self.import_n:
            return self.t0
        # Disjoint windows per id keep created_at non-decreasing in id, like an auto-increment key.
        return self.t0 + int(_SPAN_SECONDS * (cid - 1 + self.rng.random()) / self.n)

    def _updated_ts(self, created: int) -> int:
        r = self.rng.random()
        if r < 0.55:
            return created
        if r < 0.58 and created < self.mass_update_ts:
            return self.mass_update_ts
        return created + int((self.t_end - created) * self.rng.random() ** 2)

    def _locale(self, website_id: int) -> dict:
        keys, cum = self.locale_tables[website_id]
        return LOCALES[keys[bisect(cum, self.rng.random() * cum[-1])]]

    def _customer(self, cid: int) -> dict:
        rng = self.rng
        website_id = 1 if rng.random() < _WEBSITE_SHARE_BASE else 2
        store = STORES[website_id]
        loc = self._locale(website_id)
        female = rng.random() < 0.5
        first_native, first_latin = _pick(rng, loc["female" if female else "male"])
        last_native, last_latin = _pick(rng, loc["last"])
        if female:
            last_native, last_latin = _feminine_surname(loc["country"], last_native, last_latin)
        if loc["script"] != "Latin" and rng.random() < _NON_LATIN_TYPED_IN_LATIN:
            first_native, last_native = first_latin.capitalize(), last_latin.capitalize()
        created = self._created_ts(cid)
        updated = self._updated_ts(created)
        buyer = rng.random() < 0.45
        subscribed = rng.random() < (0.30 if buyer else 0.20)
        no_address = rng.random() < (0.03 if buyer else 0.157)  # about 10% overall

        c: dict = {"id": cid, "group_id": 1}
        addresses = [] if no_address else self._addresses(rng, cid, loc, first_native, last_native)
        if addresses:
            c["default_billing"] = str(addresses[0]["id"])
            c["default_shipping"] = str(addresses[-1]["id"])
            if "company" in addresses[0] and rng.random() < 0.3:
                c["group_id"] = 2  # Wholesale
        created_s = format_ts(created)
        c["created_at"] = created_s
        c["updated_at"] = created_s if updated == created else format_ts(updated)
        c["created_in"] = store["name"]
        if rng.random() < 0.35:
            c["dob"] = f"{1950 + int(rng.random() * 56)}-{1 + int(rng.random() * 12):02d}-{1 + int(rng.random() * 28):02d}"
        c["email"] = self._email(rng, cid, first_latin, last_latin)
        c["firstname"] = first_native
        c["lastname"] = last_native
        if loc["script"] == "Latin" and rng.random() < 0.05:
            c["middlename"] = chr(65 + int(rng.random() * 26)) + "."
        if rng.random() < 0.12:
            c["prefix"] = "Dr." if rng.random() < 0.15 else "Mr." if not female else _pick(rng, ("Ms.", "Ms.", "Mrs."))
        if rng.random() < 0.55:
            c["gender"] = 2 if female else 1
        c["store_id"] = website_id  # one store view per website
        c["website_id"] = website_id
        c["addresses"] = addresses
        c["disable_auto_group_change"] = 0
        c["extension_attributes"] = {"is_subscribed": subscribed}
        for a in addresses:
            if "prefix" in c:
                a["prefix"] = c["prefix"]
        if buyer:
            self.buyers.append((cid, created))
        return c

    def _email(self, rng: random.Random, cid: int, first: str, last: str) -> str:
        r = rng.random()
        if r < 0.35:
            local = f"{first}.{last}"
        elif r < 0.55:
            local = f"{first[0]}{last}"
        elif r < 0.7:
            local = f"{first}_{last}{int(rng.random() * 90) + 10}"
        elif r < 0.85:
            local = f"{first}{int(rng.random() * 40) + 1960}"
        else:
            local = f"{last}.{first[0]}"
        email = f"{local}@{_pick(rng, _DOMAINS)}"
        # Unique across websites too, so the only cross-website twins are the ones planted on purpose.
        if email in self.emails:
            email = f"{local}.{cid}@{_pick(rng, _DOMAINS)}"  # no natural pattern ends in ".<digits>"
        self.emails.add(email)
        return email

    def _region(self, region_code: str | None, region: str | None, region_id: int) -> dict:
        # One shared dict per distinct region keeps a million addresses affordable; treat it as read-only.
        key = (region_code, region, region_id)
        reg = self.regions.get(key)
        if reg is None:
            reg = {k: v for k, v in (("region_code", region_code), ("region", region), ("region_id", region_id))
                   if v is not None}
            self.regions[key] = reg
        return reg

    def _addresses(self, rng: random.Random, cid: int, loc: dict, first: str, last: str) -> list[dict]:
        count = 2 if rng.random() < 0.1 else 1
        out = []
        for i in range(count):
            city, postcode, region_code, region, region_id = _pick(rng, loc["cities"])
            house = loc.get("house", "{a}").format(
                a=1 + int(rng.random() * 300), b=1 + int(rng.random() * 9), c=1 + int(rng.random() * 30))
            street = [loc["street_fmt"].format(n=house, s=_pick(rng, loc["streets"]))]
            if rng.random() < 0.1:
                street.append(f"Apt {1 + int(rng.random() * 40)}")
            a: dict = {"id": self.next_address_id, "customer_id": cid,
                       "region": self._region(region_code, region, region_id), "region_id": region_id,
                       "country_id": loc["country"], "street": street}
            self.next_address_id += 1
            if rng.random() < 0.12:
                a["company"] = _pick(rng, loc["companies"])
            if rng.random() < 0.65:
                a["telephone"] = _digits(rng, loc["phone"])
            if postcode:
                a["postcode"] = postcode
            a["city"] = city
            a["firstname"] = first
            a["lastname"] = last
            if i == count - 1:
                a["default_shipping"] = True
            if i == 0:
                a["default_billing"] = True
            out.append(a)
        return out


class _Messiness:
    """Plants the dirty emails real stores accumulate (imports, old versions, direct DB edits)."""

    _INVALID = (lambda e: e.replace("@", "."),                 # no-at-sign.example.com
                lambda e: e.replace("@", "@@"),                # two@@example.com
                lambda e: e.split("@")[0] + "@example..com",   # double dot in the domain
                lambda e: e.split("@")[0] + "@")               # missing domain
    _DUP_VARIANTS = (str.upper, lambda e: " " + e, lambda e: e.title(), lambda e: e + " ")
    _SPACED = (lambda e: " " + e, lambda e: e + " ", lambda e: "  " + e + "  ", lambda e: "\t" + e)

    def __init__(self, rng: random.Random, customers: list[dict]) -> None:
        self.rng = rng
        self.customers = customers
        self.used: set[int] = set()

    def _take(self, website_id: int | None = None) -> dict | None:
        for _ in range(200):  # random probing; the data set is far larger than the handful we need
            c = self.customers[int(self.rng.random() * len(self.customers))]
            if c["id"] not in self.used and (website_id is None or c["website_id"] == website_id):
                self.used.add(c["id"])
                return c
        return None

    def apply(self) -> None:
        n = len(self.customers)
        k = 4 if n >= 50 else n // 12
        for fn in self._INVALID[:k]:
            self._set(self._take(), fn)
        for fn in self._DUP_VARIANTS[:k]:
            original = self._take()
            twin = original and self._take(original["website_id"])
            if twin:
                self._replace(twin, fn(original["email"]))
        if n >= 20:
            a, b = self._take(1), self._take(2)
            if a and b:
                self._replace(b, a["email"])  # same email on both websites: legal in Magento
        for fn in self._SPACED[:k]:
            self._set(self._take(), fn)
        for _ in range(max(3 if n >= 50 else 0, n * 15 // 1000)):
            self._set(self._take(), lambda e: e[0].upper() + e[1:].replace("@example", "@Example"))

    def _set(self, c: dict | None, fn) -> None:
        if c:
            self._replace(c, fn(c["email"]))

    def _replace(self, c: dict, email: str) -> None:
        c["email"] = email


class _Orders:
    """Orders of buyers and a handful of guests, numbered in time order like auto-increment ids."""

    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.rng = gen.rng

    def build(self) -> list[dict]:
        pending: list[tuple[int, int, dict]] = []  # (created ts, tie-break, order without ids)
        for cid, created in self.gen.buyers:
            c = self.gen.customers[cid - 1]
            for _ in range(1 + bisect(_ORDER_COUNT_CUM, self.rng.random() * _ORDER_COUNT_CUM[-1])):
                ts = created + int((self.gen.t_end - created) * self.rng.random())
                pending.append((ts, len(pending), self._order(c, ts)))
        for _ in range(max(5, self.gen.n // 500)):
            ts = self.gen.t0 + int(_SPAN_SECONDS * self.rng.random())
            pending.append((ts, len(pending), self._order(self._guest(), ts)))
        pending.sort(key=lambda p: (p[0], p[1]))
        seq = {1: 0, 2: 0}
        orders = [p[2] for p in pending]
        del pending
        for entity_id, o in enumerate(orders, start=1):
            store_id = o["store_id"]
            seq[store_id] += 1
            o["entity_id"] = entity_id  # the placeholder keys keep their place at the front
            o["increment_id"] = f"{STORES[store_id]['increment_prefix']}{seq[store_id]:09d}"
        return orders

    def _guest(self) -> dict:
        rng = self.rng
        website_id = 1 if rng.random() < _WEBSITE_SHARE_BASE else 2
        loc = self.gen._locale(website_id)
        first, first_latin = _pick(rng, loc["female" if rng.random() < 0.5 else "male"])
        last, last_latin = _pick(rng, loc["last"])
        if self.gen.customers and rng.random() < 0.4:
            # A registered customer who checked out as a guest: same person and email, no customer_id.
            c = _pick(rng, self.gen.customers)
            return {"store_id": c["store_id"], "email": c["email"], "firstname": c["firstname"],
                    "lastname": c["lastname"], "guest": True}
        email = f"{first_latin}.{last_latin}.guest{int(rng.random() * 10000)}@{_pick(rng, _DOMAINS)}"
        return {"store_id": website_id, "email": email, "firstname": first, "lastname": last, "guest": True}

    def _order(self, who: dict, ts: int) -> dict:
        rng = self.rng
        store = STORES[who["store_id"]]
        state, status, _, refund = _ORDER_STATES[bisect(_ORDER_STATE_CUM, rng.random() * _ORDER_STATE_CUM[-1])]
        base_total = round(rng.lognormvariate(4.0, 0.8) + 4.99, 2)
        grand_total = round(base_total * store["rate"], 2)
        guest = who.get("guest", False)
        o: dict = {"entity_id": 0, "increment_id": "", "state": state, "status": status, "store_id": who["store_id"], "store_name": store["order_store_name"]}
        if not guest:
            o["customer_id"] = who["id"]
        o["customer_email"] = who["email"]
        o["customer_firstname"] = who["firstname"]
        o["customer_lastname"] = who["lastname"]
        o["customer_is_guest"] = 1 if guest else 0
        o["grand_total"] = grand_total
        o["base_grand_total"] = base_total
        if refund:
            share = 1.0 if refund == "full" else 0.1 + 0.5 * rng.random()
            o["total_refunded"] = round(grand_total * share, 2)
            o["base_total_refunded"] = round(base_total * share, 2)
        o["order_currency_code"] = store["order_currency"]
        o["base_currency_code"] = BASE_CURRENCY
        o["created_at"] = format_ts(ts)
        o["updated_at"] = format_ts(ts + self._update_delay(state, refund))
        return o

    def _update_delay(self, state: str, refund: str | None) -> int:
        if state == "new":
            return 0
        if refund:
            return 86400 * (5 + int(self.rng.random() * 30))  # a credit memo weeks later
        if state == "complete":
            return 3600 * (12 + int(self.rng.random() * 120))  # invoiced and shipped
        return 60 + int(self.rng.random() * 7200)


def generate_store(n_customers: int = 3000, *, seed: int = 7, start: str = "2024-01-01 00:00:00") -> StoreData:
    """A deterministic store: same (n_customers, seed, start) gives the same data, in any process."""
    if n_customers < 0:
        raise ValueError("n_customers must be >= 0")
    # Millions of small containers make the cyclic GC rescan everything again and again (2x the run time);
    # nothing here creates cycles, so pause it for the duration.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        data = _Generator(n_customers, seed, start).run()
        if n_customers >= _FREEZE_FROM:
            # Benchmark-sized data lives as long as the process: move it out of the GC's reach, or the
            # next collections (and every full one after) would traverse tens of millions of objects.
            gc.freeze()
        return data
    finally:
        if was_enabled:
            gc.enable()
