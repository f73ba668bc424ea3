"""One language-code scheme: every language in xlalign is its **ISO 639-1 two-letter code**
(:data:`LANGUAGES`). Upstream datasets use other schemes; they are mapped onto ISO 639-1 here and
nowhere else: SIB-200/FLORES-200 codes (``deu_Latn``; :data:`FLORES_CODES`), LASER/Tatoeba ISO
639-3 codes (``deu``, ``cmn``; :data:`LASER_CODES`) and NTREX-128 file codes (``zho-CN``;
:data:`NTREX_CODES`). :func:`iso_code` turns any of them back into the ISO 639-1 code.
"""

from __future__ import annotations

from xlcore.errors import DataError

LANGUAGES: dict[str, str] = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "ru": "Russian",
    "ar": "Arabic", "hi": "Hindi", "zh": "Chinese", "ja": "Japanese", "tr": "Turkish",
    "fi": "Finnish", "ko": "Korean", "vi": "Vietnamese", "he": "Hebrew", "el": "Greek",
    "ta": "Tamil", "mr": "Marathi", "id": "Indonesian", "eu": "Basque", "af": "Afrikaans",
    "ur": "Urdu", "fa": "Persian", "hu": "Hungarian", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "bg": "Bulgarian", "et": "Estonian",
}  # fmt: skip
"""ISO 639-1 code → English name, for the 28 languages of the data root."""


FLORES_CODES: dict[str, str] = {
    "en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "ru": "rus_Cyrl",
    "ar": "arb_Arab", "hi": "hin_Deva", "zh": "zho_Hans", "ja": "jpn_Jpan", "tr": "tur_Latn",
    "fi": "fin_Latn", "ko": "kor_Hang", "vi": "vie_Latn", "he": "heb_Hebr", "el": "ell_Grek",
    "ta": "tam_Taml", "mr": "mar_Deva", "id": "ind_Latn", "eu": "eus_Latn", "af": "afr_Latn",
    "ur": "urd_Arab", "fa": "pes_Arab", "hu": "hun_Latn", "it": "ita_Latn", "pt": "por_Latn",
    "nl": "nld_Latn", "bg": "bul_Cyrl", "et": "est_Latn",
}  # fmt: skip
"""ISO 639-1 → SIB-200/FLORES-200 code (language_Script)."""


LASER_CODES: dict[str, str] = {
    "en": "eng", "de": "deu", "fr": "fra", "es": "spa", "ru": "rus", "ar": "ara", "hi": "hin",
    "zh": "cmn", "ja": "jpn", "tr": "tur", "fi": "fin", "ko": "kor", "vi": "vie", "he": "heb",
    "el": "ell", "ta": "tam", "mr": "mar", "id": "ind", "eu": "eus", "af": "afr", "ur": "urd",
    "fa": "pes", "hu": "hun", "it": "ita", "pt": "por", "nl": "nld", "bg": "bul", "et": "est",
}  # fmt: skip
"""ISO 639-1 → LASER Tatoeba code (ISO 639-3; ``cmn`` Mandarin, ``ara`` Arabic, ``pes`` Persian)."""


NTREX_CODES: dict[str, str] = {
    "en": "eng", "de": "deu", "fr": "fra", "es": "spa", "ru": "rus", "ar": "arb", "hi": "hin",
    "zh": "zho-CN", "ja": "jpn", "tr": "tur", "fi": "fin", "ko": "kor", "vi": "vie", "he": "heb",
    "el": "ell", "ta": "tam", "mr": "mar", "id": "ind", "eu": "eus", "af": "afr", "ur": "urd",
    "fa": "fas", "hu": "hun", "it": "ita", "pt": "por", "nl": "nld", "bg": "bul", "et": "est",
}  # fmt: skip
"""ISO 639-1 → NTREX-128 file code (``newstest2019-ref.<code>.txt``)."""


def iso_code(code: str) -> str:
    """The ISO 639-1 code for ``code`` given in any scheme (ISO 639-1, FLORES-200, LASER, NTREX)."""
    if code in LANGUAGES:
        return code
    for table in (FLORES_CODES, LASER_CODES, NTREX_CODES):
        for iso, other in table.items():
            if other == code:
                return iso
    raise DataError(
        f"unknown language code {code!r}; use an ISO 639-1 code, one of: {', '.join(LANGUAGES)}"
    )
