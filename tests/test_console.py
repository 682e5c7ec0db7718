"""What a user sees: library noise dropped, what says something kept, a settings check that says nothing."""

import logging

import pytest

from supernet.utils.console import format_duration, muted, quiet


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def captured():
    root, handler = logging.getLogger(), Capture()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    quiet()  # filters the handlers present, as an entry point's Hydra handlers
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_library_noise_is_dropped_and_the_rest_kept(captured):
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    lightning.info("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]")
    lightning.info("`Trainer.fit` stopped: `max_epochs=1` reached.")
    lightning.info("GPU available: False, used: False")
    lightning.warning("The number of training batches (3) is smaller than the logging interval")
    assert captured.messages == ["The number of training batches (3) is smaller than the logging interval"]


def test_a_trainer_built_to_check_settings_announces_nothing(captured):
    from omegaconf import OmegaConf

    from supernet.training.setup import build_trainer

    settings = OmegaConf.create(
        {
            "_target_": "pytorch_lightning.Trainer",
            "accelerator": "cpu",
            "devices": 1,
            "precision": "bf16-mixed",
            "max_epochs": 1,
        }
    )
    with muted():
        build_trainer(settings, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert not [m for m in captured.messages if "Precision" in m]
    build_trainer(settings, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert any("Automatic Mixed Precision" in m for m in captured.messages)  # the real one still says it


def test_durations_read_as_a_person_would_say_them():
    assert [format_duration(s) for s in (None, float("inf"), 42.4, 725, 11045)] == [
        "unknown", "unknown", "42 s", "12m 05s", "3h 04m 05s",
    ]  # fmt: skip
