"""The reader's view of an executed chapter (xlcore.notebooks)."""

import nbformat

from xlcore.notebooks import reader_view, with_values

PARAMETERS = (
    'profile = "mini"  # xlcore profile\n# overrides: any setting\noverrides = []\nruns = ""'
)


def test_injected_values_replace_the_defaults_and_keep_the_comments():
    out = with_values(PARAMETERS, {"profile": "smoke", "overrides": ["a=1"], "extra": 2})
    assert out.splitlines() == [
        'profile = "smoke"  # xlcore profile',
        "# overrides: any setting",
        'overrides = ["a=1"]',
        'runs = ""',
        "extra = 2",
    ]


def test_a_hash_in_a_string_and_a_value_over_several_lines_are_replaced_whole():
    source = 'tag = "a#b"  # a tag\nlosses = [\n    "l2",\n    "infonce",\n]  # losses\nx = 1'
    out = with_values(source, {"tag": "c#d", "losses": ["l2"]})
    assert out.splitlines() == ['tag = "c#d"  # a tag', 'losses = ["l2"]  # losses', "x = 1"]


def test_reader_view_drops_the_injected_cell_and_stderr():
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell(
        '# Parameters\nprofile = "smoke"\nruns = "../runs"\n',
        metadata={"tags": ["injected-parameters"]},
    )
    work = nbformat.v4.new_code_cell("x = 1")
    work.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="progress 10%\n"),
        nbformat.v4.new_output("stream", name="stdout", text="a result\n"),
    ]
    nb.cells = [params, injected, work]
    reader_view(nb)
    assert len(nb.cells) == 2
    assert nb.cells[0].source.splitlines()[0] == 'profile = "smoke"  # xlcore profile'
    assert 'runs = ""' in nb.cells[0].source  # the builder's runs directory is not shown
    assert [o["name"] for o in nb.cells[1].outputs] == ["stdout"]
