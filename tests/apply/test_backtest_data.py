"""``--data`` choices of a back-test: parsing and where the content goes (pure parts)."""

from __future__ import annotations

import pytest

from canon.apply.backtest_data import DataChoice, model_stage_of, parse_data, slot_for
from canon.digest import hash_bytes
from canon.stores.exprefs import ExperimentError
from canon.stores.records import Content, DatasetRecord


def record(path: str, data: bytes, *, is_dir: bool = False) -> DatasetRecord:
    return DatasetRecord(path, Content(hash_bytes(data), len(data), 1, is_dir))


def choice(text: str, rec: DatasetRecord) -> DataChoice:
    slot, name, rev = parse_data(text)
    return DataChoice(text, name, slot, rev, None, rec)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("weather", (None, "weather", None)),
        ("weather@HEAD~1", (None, "weather", "HEAD~1")),
        ("weather@v1.2", (None, "weather", "v1.2")),
        ("train=weather_2016", ("train", "weather_2016", None)),
        ("train=weather_2016@abc123", ("train", "weather_2016", "abc123")),
    ],
)
def test_parse_data(text: str, parsed: tuple[str | None, str, str | None]) -> None:
    assert parse_data(text) == parsed


@pytest.mark.parametrize("text", ["", "we ather", "=x", "a=b=c", "@HEAD", "x@"])
def test_parse_data_refuses(text: str) -> None:
    with pytest.raises(ExperimentError, match="is not NAME\\[@REV\\] or SLOT=NAME\\[@REV\\]"):
        parse_data(text)


def test_slot_is_the_name_or_the_only_dataset_and_keeps_its_shape() -> None:
    pins = {"weather": record(".canon/data/weather", b"old")}
    new = record(".canon/data/weather", b"new")
    assert slot_for(choice("weather@HEAD", new), pins, "abc") == "weather"
    other = record(".canon/data/weather_2016", b"2016")
    assert slot_for(choice("weather_2016", other), pins, "abc") == "weather"  # the only one
    assert slot_for(choice("weather=weather_2016", other), pins, "abc") == "weather"
    two = {**pins, "stations": record(".canon/data/stations", b"s")}
    with pytest.raises(ExperimentError, match="pins no dataset 'weather_2016' and 2 others") as e:
        slot_for(choice("weather_2016", other), two, "abc")
    assert e.value.hint == "say which one it replaces: --data SLOT=weather_2016"
    with pytest.raises(ExperimentError, match="abc pins no dataset 'nosuch'"):
        slot_for(choice("nosuch=weather_2016", other), two, "abc")
    folder = record(".canon/data/weather_dir", b"manifest", is_dir=True)
    with pytest.raises(ExperimentError, match="is a directory but abc's weather is a file"):
        slot_for(choice("weather=weather_dir", folder), pins, "abc")


def test_model_stage_defaults_to_train_with_a_did_you_mean() -> None:
    assert model_stage_of(["features", "train", "evaluate"], None, "abc") == "train"
    assert model_stage_of(["fit", "score"], "fit", "abc") == "fit"
    with pytest.raises(ExperimentError, match="abc declares no stage 'train'") as e:
        model_stage_of(["fit", "score"], None, "abc")
    assert e.value.hint == "name it with --model-stage (stages: fit, score)"
    with pytest.raises(ExperimentError, match="no stage 'trian'") as e:
        model_stage_of(["features", "train"], "trian", "abc")
    assert e.value.hint == 'did you mean "train"?'
