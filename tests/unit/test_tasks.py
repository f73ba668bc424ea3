"""Tasks as objects: one registry, consistent with the config's choices; heads and batches follow
the task's labels and granularity."""

import pytest

from xlcore import config, encoders
from xlcore.batching import collate
from xlcore.data import SIB_LABELS
from xlcore.errors import ConfigError
from xlcore.paths import SAMPLE_ROOT
from xlcore.readers import UPOS
from xlcore.taskmodel import TaskModel
from xlcore.tasks import POS, SIB, TASKS, get_task


def test_the_registry_is_the_configs_task_choices():
    assert tuple(TASKS) == config.TASKS
    assert get_task("pos") is POS and get_task(SIB) is SIB
    assert POS.labels == UPOS and SIB.labels == SIB_LABELS


def test_an_unknown_task_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown task 'po'. Did you mean pos"):
        get_task("po")


@pytest.mark.parametrize("task", [POS, SIB])
def test_head_and_batches_follow_the_task(task):
    encoder, tok = encoders.load("tiny-xlmr")
    model = TaskModel(encoder, task.name)
    assert model.head.out_features == task.num_labels
    examples = task.encode(tok, task.load("en", "dev", source=SAMPLE_ROOT, limit=3), 64)
    batch = collate(examples, tok, task)
    logits = model(batch["input_ids"], batch["attention_mask"])
    if task.token_level:
        assert batch["labels"].shape == batch["input_ids"].shape
        assert logits.shape[:2] == batch["input_ids"].shape
    else:
        assert batch["labels"].shape == (3,)
        assert logits.shape == (3, task.num_labels)
