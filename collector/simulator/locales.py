"""The console strings of netsh and netstat in each display language, as verified in the corpus.

Only strings seen in real output are used: facts.md section C ("Verified localized strings") and
the corpus captures named beside each table. A language without a verified string for a command
gets the English text, never a translation of our own (facts.md section D lists public fixtures
that invented such translations and got them wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class ExcludedText:
    """What ``netsh int ipv4 show excludedportrange`` prints around its rows."""

    title: str  # "{protocol}" stands for tcp or udp
    header: str
    dashes: str
    footer: str


@dataclass(frozen=True, slots=True)
class DynamicText:
    """What ``netsh int ipv4 show dynamicport`` prints around its two numbers."""

    title: str
    start: str  # label up to and including its colon, padded as printed
    count: str


@dataclass(frozen=True, slots=True)
class NetstatText:
    """What ``netstat -ano`` prints above its rows, and its state words."""

    title: str
    header: str
    states: MappingProxyType[str, str]  # English state -> printed state; missing means English


# Titles, headers and footers: facts.md C. Dash rows: the captures (excluded-fr-1 has 13/11
# dashes under the longer French headers; excluded-es-2 aligns "--------" under "Puerto final").
# Japanese is missing on purpose: no real excludedportrange paste exists (corpus INDEX), and the
# only public Japanese footer is unverified (facts.md D), so Japanese hosts print English.
_EXCLUDED = MappingProxyType(
    {
        "en": ExcludedText(
            "Protocol {protocol} Port Exclusion Ranges",
            "Start Port    End Port",
            "----------    --------",
            "* - Administered port exclusions.",
        ),
        "de": ExcludedText(
            'Portausschlussbereiche für das Protokoll "{protocol}"',
            "Startport      Endport",
            "----------    --------",
            "* - Verwaltete Portausschlüsse.",
        ),
        "fr": ExcludedText(
            "Protocole {protocol} Plages d'exclusion de ports",
            "Port de début    Port de fin",
            "-------------    -----------",
            "* - Exclusions de ports administrés.",
        ),
        "es": ExcludedText(
            "Protocolo {protocol} Intervalos de exclusión de puertos",
            "Puerto de inicio    Puerto final",
            "----------          --------",
            "* - Exclusiones de puertos administrados.",
        ),
        "zh": ExcludedText(
            "协议 {protocol} 端口排除范围",
            "开始端口    结束端口",
            "----------    --------",
            "* - 管理的端口排除。",
        ),
        "ko": ExcludedText(
            "프로토콜 {protocol} 포트 제외 범위",
            "시작 포트    끝 포트",
            "----------    --------",
            "* - 관리 포트 제외입니다.",
        ),
    }
)

# facts.md C verifies Japanese and Chinese dynamicport labels; English from dynamicport-en-1.
# German, French, Spanish and Korean dynamicport were never found as real pastes (corpus INDEX;
# facts.md D: two German fixtures disagree), so those hosts print English.
_DYNAMIC = MappingProxyType(
    {
        "en": DynamicText(
            "Protocol {protocol} Dynamic Port Range", "Start Port      :", "Number of Ports :"
        ),
        "ja": DynamicText(
            "プロトコル {protocol} の動的ポートの範囲", "開始ポート      :", "ポート数        :"
        ),
        "zh": DynamicText("协议 {protocol} 动态端口范围", "启动端口        :", "端口数          :"),
    }
)
# 33 dashes in dynamicport-en-1 and dynamicport-zh-2; assumed the same for Japanese.
DYNAMIC_DASHES = "-" * 33

# English from the corpus (netstat-en-1's header, with the PID column -o adds). German title,
# header and states from the real German paste cited in collector/parsers/netstat.py and
# tests/test_parse_netstat.py. Other languages: no verified netstat text in the corpus, and
# Korean and Chinese pastes keep English state words (facts.md C), so they print English.
_NETSTAT = MappingProxyType(
    {
        "en": NetstatText(
            "Active Connections",
            "  Proto  Local Address          Foreign Address        State           PID",
            MappingProxyType({}),
        ),
        "de": NetstatText(
            "Aktive Verbindungen",
            "  Proto  Lokale Adresse         Remoteadresse          Status           PID",
            MappingProxyType(
                {"LISTENING": "ABHÖREN", "ESTABLISHED": "HERGESTELLT", "TIME_WAIT": "WARTEND"}
            ),
        ),
    }
)


def excluded_text(culture: str) -> ExcludedText:
    """Return the excludedportrange strings for a culture such as ``fr-FR`` (English if none)."""
    return _EXCLUDED.get(language(culture), _EXCLUDED["en"])


def dynamic_text(culture: str) -> DynamicText:
    """Return the dynamicport strings for a culture (English if none is verified)."""
    return _DYNAMIC.get(language(culture), _DYNAMIC["en"])


def netstat_text(culture: str) -> NetstatText:
    """Return the netstat title, header and state words for a culture (English if none)."""
    return _NETSTAT.get(language(culture), _NETSTAT["en"])


def verified_languages() -> dict[str, tuple[str, ...]]:
    """Name the languages each command is printed in, besides English."""
    return {
        "excluded": tuple(sorted(set(_EXCLUDED) - {"en"})),
        "dynamicport": tuple(sorted(set(_DYNAMIC) - {"en"})),
        "netstat": tuple(sorted(set(_NETSTAT) - {"en"})),
    }


def language(culture: str) -> str:
    """Return the language of a culture name, "de" for "de-CH"."""
    return culture.split("-")[0].lower()
