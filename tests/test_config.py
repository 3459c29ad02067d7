import json

import pytest

from deid.errors import InputError
from reid_model.config import (
    BackboneConfig,
    ComPAConfig,
    HeadConfig,
    ModelConfig,
    PreprocessConfig,
    TrainConfig,
    available_presets,
    load_preset,
)


def test_bundled_presets_load_and_round_trip_through_json():
    assert {"test", "demo", "paper"} <= set(available_presets())
    for name in ("test", "demo", "paper"):
        model, train = load_preset(name)
        model_back = ModelConfig.from_dict(json.loads(json.dumps(model.to_dict())))
        train_back = TrainConfig.from_dict(json.loads(json.dumps(train.to_dict())))
        assert model_back == model and train_back == train
        assert model.preprocess.img_size == model.backbone.img_size


def test_paper_preset_is_the_clip_vit_b16_of_the_paper():
    model, _ = load_preset("paper")
    b = model.backbone
    assert (b.img_size, b.patch_size, b.embed_dim, b.depth, b.num_heads) == (224, 16, 768, 12, 12)
    assert (model.compa.num_bases, model.compa.lora_rank, model.head.num_queries) == (32, 16, 4)
    assert model.head.align_weight == pytest.approx(0.01)


def test_from_dict_rejects_unknown_keys_at_every_level():
    with pytest.raises(InputError, match="lora_rnak"):
        ComPAConfig.from_dict({"lora_rnak": 4})
    data = load_preset("test")[0].to_dict()
    data["head"]["num_querys"] = 3
    with pytest.raises(InputError, match="num_querys"):
        ModelConfig.from_dict(data)
    with pytest.raises(InputError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_invalid_values_are_rejected_with_the_field_named():
    with pytest.raises(InputError, match="patch_size"):
        BackboneConfig(img_size=30, patch_size=8)
    with pytest.raises(InputError, match="volume_pooling"):
        HeadConfig(volume_pooling="max")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="lora_targets"):
        ComPAConfig(lora_targets=("proj",))
    with pytest.raises(InputError, match="low_pct"):
        PreprocessConfig(low_pct=99.0, high_pct=1.0)
    with pytest.raises(InputError, match="img_size"):
        ModelConfig(
            backbone=BackboneConfig(img_size=32, patch_size=8, embed_dim=32, num_heads=2),
            preprocess=PreprocessConfig(img_size=64),
        )


def test_configs_are_frozen():
    cfg = HeadConfig()
    with pytest.raises(AttributeError):
        cfg.embed_dim = 3  # type: ignore[misc]


def test_load_preset_reads_a_file_and_names_unknown_presets(tmp_path):
    model, train = load_preset("test")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"model": model.to_dict(), "train": train.to_dict()}))
    assert load_preset(str(path)) == (model, train)
    with pytest.raises(InputError, match="Unknown preset 'nope'"):
        load_preset("nope")
    path.write_text(json.dumps({"model": model.to_dict()}))
    with pytest.raises(InputError, match="'model' and 'train'"):
        load_preset(str(path))
