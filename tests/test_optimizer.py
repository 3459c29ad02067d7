"""The pixel identity-removal optimizer, against tiny random re-identifiers and a tiny MFM."""

from __future__ import annotations

from pathlib import Path

import kornia
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from deid.errors import InputError
from deid.io.discover import discover, load
from deid.io.record import Encoding, Kind, Record
from deid.io.writers import write_like
from deid.scrub.optimizer import embed_pixels, scrub_batch, scrub_pixels, to_unit, to_unit_like
from deid.scrub.pixel_adversary import Adversary
from deid.scrub.pixel_cleaner import PixelScrubber, ReferenceBank, record_seed
from deid.scrub.pixel_metrics import psnr, ssim
from deid.scrub.pixel_objective import middle_tokens
from deid.scrub.pixel_quantise import quantise
from deid.scrub.pixel_settings import PixelSettings, parse_overrides, settings_for
from deid.scrub.pixel_transforms import random_transform
from reid_model.config import load_preset
from reid_model.mfm import PhantomFrozenMFM, PhantomMFMConfig, PhantomMFMNet
from reid_model.model import build_model
from reid_model.preprocess import preprocess

FAST = {"steps": 6, "eot_samples": 2}
NO_TRANSFORMS = {
    "shift": 0.0,
    "rotation_deg": 0.0,
    "rescale": 0.0,
    "blur_sigma": 0.0,
    "noise_std": 0.0,
}


@pytest.fixture(scope="module")
def adversary() -> Adversary:
    torch.manual_seed(0)
    cfg, _ = load_preset("test")
    model = build_model(cfg, with_mfm=False)
    mfm_cfg = PhantomMFMConfig(
        findings=("a", "b"), modalities=("x",), img_size=32, patch_size=8, embed_dim=32, depth=1
    )
    mfm = PhantomFrozenMFM(PhantomMFMNet(mfm_cfg), cfg.preprocess)
    return Adversary([model], [cfg.preprocess], [mfm])


def _anatomy(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Smooth blobs plus noise: something with structure for SSIM and the models to see."""
    yy, xx = np.mgrid[: shape[-2], : shape[-1]] / max(shape[-2:])
    image = np.zeros(shape[-2:])
    for _ in range(5):
        cy, cx, r = rng.random(3)
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.02 + 0.05 * r))
    return image + 0.05 * rng.random(shape)


def _ct_file(path: Path, patient: str, pixels: np.ndarray) -> None:
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = patient, "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def _records(root: Path) -> dict[str, Record]:
    return {item.key: load(item) for item in discover(root).items}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(1)
    for i in range(3):
        _ct_file(root / f"ct{i}.dcm", f"P{i % 2}", _anatomy(rng, (40, 40)) * 1500)
    Image.fromarray((_anatomy(rng, (36, 44)) * 20000).astype(np.uint16)).save(root / "g16.png")
    rgb = np.stack([_anatomy(rng, (32, 32)) for _ in range(3)], -1) * 120
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(root / "rgb.png")
    return root


def test_outputs_keep_bit_depth_and_respect_epsilon_after_quantisation(
    adversary: Adversary, release: Path, tmp_path: Path
) -> None:
    settings = settings_for("medium", **FAST)
    cleaner = PixelScrubber(adversary, settings, seed=3)
    for key, record in _records(release).items():
        new = cleaner(record)
        assert new.shape == record.pixels.shape and not np.array_equal(new, record.pixels)
        np.testing.assert_array_equal(quantise(record, new), new)  # already on the stored grid
        unit = to_unit(record.pixels, record.modality, adversary.primary)
        step = 2.0 if record.kind == "dicom" else 1.0  # rescale slope of the CT files
        assert np.abs(new - record.pixels).max() <= settings.epsilon * unit.scale + step / 2
        out = tmp_path / Path(key).name
        write_like(record, new, [out])
        back = load(discover(out).items[0])
        assert back.source_dtype == record.source_dtype and back.bits_stored == record.bits_stored
        np.testing.assert_allclose(back.pixels, new, atol=1e-3)
        metrics = cleaner.metrics[key]
        assert metrics.linf_unit <= settings.epsilon + 0.5 / unit.scale * step + 1e-6
        assert metrics.reid_similarity_quantised == pytest.approx(
            metrics.reid_similarity_after, abs=1e-6
        )


def test_identity_similarity_drops_more_than_random_noise_of_same_size(
    adversary: Adversary,
) -> None:
    image = _anatomy(np.random.default_rng(5), (48, 48)).astype(np.float32) * 4000
    settings = settings_for("high", steps=12, eot_samples=2, lambda_mfm=0.0, lambda_vis=0.0)
    _, metrics = scrub_pixels(image, "DX", adversary, settings, torch.Generator().manual_seed(0))
    assert metrics.reid_similarity_before == pytest.approx(1.0, abs=1e-5)
    assert metrics.reid_similarity_after < metrics.reid_similarity_before - 1e-3
    signs = np.random.default_rng(0).choice([-1.0, 1.0], image.shape)
    unit = to_unit(image, "DX", adversary.primary)
    noisy = image + signs * settings.epsilon * unit.scale
    own = embed_pixels(image, "DX", adversary)
    random_similarity = float(embed_pixels(noisy, "DX", adversary) @ own)
    assert metrics.reid_similarity_after < random_similarity


def test_mfm_weight_keeps_mfm_features(adversary: Adversary) -> None:
    image = _anatomy(np.random.default_rng(7), (40, 40)).astype(np.float32) * 1000
    sims = []
    for weight in (0.0, 50.0):
        settings = settings_for("high", steps=8, eot_samples=1, lambda_mfm=weight, lambda_vis=0.0)
        _, metrics = scrub_pixels(
            image, "DX", adversary, settings, torch.Generator().manual_seed(0)
        )
        assert metrics.mfm_similarity is not None
        sims.append(metrics.mfm_similarity)
    assert sims[1] > sims[0]


def test_ssim_floor_lets_the_perturbation_use_its_budget(adversary: Adversary) -> None:
    # 1 - SSIM pins a small perturbation near zero; a floor frees it down to that SSIM
    image = _anatomy(np.random.default_rng(9), (48, 48)).astype(np.float32) * 4000
    out = {}
    for floor in (1.0, 0.9):
        settings = settings_for("medium", steps=10, eot_samples=1, lambda_mfm=0.0, ssim_floor=floor)
        out[floor] = scrub_pixels(
            image, "DX", adversary, settings, torch.Generator().manual_seed(0)
        )
    (pinned, pinned_m), (free, free_m) = out[1.0], out[0.9]
    assert np.abs(free - image).mean() > 2 * np.abs(pinned - image).mean()
    assert pinned_m.ssim > free_m.ssim >= 0.85  # the floor holds, give or take a step
    with pytest.raises(InputError, match="ssim_floor"):
        PixelSettings(ssim_floor=0.0)


def test_same_seed_same_output_other_seed_other_output(adversary: Adversary) -> None:
    image = _anatomy(np.random.default_rng(2), (32, 32)).astype(np.float32) * 255
    settings = settings_for("medium", **FAST)
    runs = [
        scrub_pixels(
            image, "OT", adversary, settings, torch.Generator().manual_seed(s), quantiser=np.rint
        )[0]
        for s in (4, 4, 5)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert record_seed(0, "a.dcm") == record_seed(0, "a.dcm") != record_seed(1, "a.dcm")


def test_volume_is_perturbed_as_a_whole(adversary: Adversary) -> None:
    rng = np.random.default_rng(3)
    volume = np.stack([_anatomy(rng, (24, 28)) for _ in range(3)]).astype(np.float32) * 800
    settings = settings_for("medium", **FAST)
    new, metrics = scrub_pixels(
        volume, "CT", adversary, settings, torch.Generator().manual_seed(0), quantiser=np.rint
    )
    assert new.shape == volume.shape
    assert all(not np.array_equal(new[s], volume[s]) for s in range(3))
    assert metrics.linf_unit <= settings.epsilon + 1e-3
    assert metrics.reid_similarity_after < 1.0 and 0.0 < metrics.ssim < 1.0
    chunked = settings_for("medium", slice_chunk=2, **FAST)
    new2, metrics2 = scrub_pixels(
        volume, "CT", adversary, chunked, torch.Generator().manual_seed(0), quantiser=np.rint
    )
    assert new2.shape == volume.shape and not np.array_equal(new2, new)
    assert metrics2.linf_unit <= settings.epsilon + 1e-3
    assert all(not np.array_equal(new2[s], volume[s]) for s in range(3))


def test_every_slice_of_a_volume_defends_the_ssim_floor(adversary: Adversary) -> None:
    rng = np.random.default_rng(4)
    volume = np.stack([_anatomy(rng, (32, 32)) for _ in range(8)]).astype(np.float32) * 800
    settings = settings_for(
        "high", steps=12, eot_samples=1, lambda_mfm=0.0, quality_slices=1, ssim_floor=0.9
    )
    new, _ = scrub_pixels(volume, "CT", adversary, settings, torch.Generator().manual_seed(0))
    unit = to_unit(volume, "CT", adversary.primary)
    after = to_unit_like(unit, (new - unit.low) / unit.scale).clamp(0, 1)
    per_slice = [float(ssim(after[k : k + 1], unit.stack[k : k + 1].clamp(0, 1))) for k in range(8)]
    assert min(per_slice) >= 0.87  # the floor, give or take the last signed step


def test_constant_image_is_returned_unchanged(adversary: Adversary) -> None:
    image = np.full((16, 16), 7.0, np.float32)
    new, metrics = scrub_pixels(
        image, "OT", adversary, settings_for("low", **FAST), torch.Generator()
    )
    np.testing.assert_array_equal(new, image)
    assert metrics.linf == 0.0


def test_reference_bank_gives_other_images_of_the_patient_and_a_decoy(
    adversary: Adversary, release: Path
) -> None:
    records = _records(release)
    bank = ReferenceBank.build(records.values(), adversary)
    assert sorted(bank.keys) == ["P0", "P1"]  # PNGs carry no patient id
    context = bank.context(records["ct0.dcm"], with_decoy=True)
    assert context.others[0] is not None and context.others[0].shape[0] == 1  # ct2: P0's other
    assert bank.context(records["ct1.dcm"]).others == (None,)  # P1 has no other image
    assert context.decoys[0] is not None and context.decoys[0].shape == (32,)
    p1 = torch.nn.functional.normalize(bank.embeddings["P1"][0].mean(0), dim=-1)
    torch.testing.assert_close(context.decoys[0], p1)  # the only other patient
    assert bank.context(records["ct0.dcm"]).decoys == (None,)  # not asked for
    cts = [
        embed_pixels(r.pixels, "CT", adversary) for k, r in records.items() if k.startswith("ct")
    ]
    torch.testing.assert_close(context.centres[0], torch.stack(cts).mean(0))
    settings = settings_for("high", lambda_decoy=1.0, lambda_mfm=0.0, lambda_vis=0.0, **FAST)
    cleaner = PixelScrubber(adversary, settings, references=bank)
    cleaner(records["ct0.dcm"])
    metrics = cleaner.metrics["ct0.dcm"]
    assert metrics.reid_similarity_before < 1.0  # now the mean over the original and ct2
    assert metrics.reid_similarity_after < metrics.reid_similarity_before


def test_reference_bank_from_plain_images_matches_the_record_bank(
    adversary: Adversary, release: Path
) -> None:
    records = _records(release)
    from_records = ReferenceBank.build(records.values(), adversary)
    items = [(r.key, r.metadata.get("PatientID"), r.pixels, r.modality) for r in records.values()]
    bank = ReferenceBank.from_images(items, adversary)
    assert bank.keys == from_records.keys and bank.centres.keys() == from_records.centres.keys()
    expected = from_records.context(records["ct0.dcm"], with_decoy=True)
    got = bank.context_of("ct0.dcm", "P0", "CT", with_decoy=True)
    for field in ("others", "decoys", "centres"):
        torch.testing.assert_close(getattr(got, field)[0], getattr(expected, field)[0])
    assert bank.context_of("x", "nobody", "CT").others == (None,)
    alone = ReferenceBank.from_images(items[:1], adversary)  # one image: no centre, no others
    assert alone.centres == {} and alone.context_of(*items[0][:2], "CT").centres == (None,)


def test_centring_changes_what_the_identity_term_moves(adversary: Adversary, release: Path) -> None:
    records = _records(release)
    bank = ReferenceBank.build(records.values(), adversary)
    outputs = []
    for centred in (False, True):
        settings = settings_for("high", centred=centred, lambda_mfm=0.0, lambda_vis=0.0, **FAST)
        cleaner = PixelScrubber(adversary, settings, references=bank)
        outputs.append(cleaner(records["ct0.dcm"]))
        assert cleaner.metrics["ct0.dcm"].linf_unit <= settings.epsilon + 1e-3
    assert not np.array_equal(*outputs)


def test_momentum_changes_the_path_within_the_same_budget(adversary: Adversary) -> None:
    image = _anatomy(np.random.default_rng(5), (48, 48)).astype(np.float32) * 4000
    runs = {}
    for momentum in (0.0, 1.0):
        settings = settings_for(
            "high", steps=8, eot_samples=2, lambda_mfm=0.0, lambda_vis=0.0, momentum=momentum
        )
        runs[momentum] = scrub_pixels(
            image, "DX", adversary, settings, torch.Generator().manual_seed(0)
        )
    (plain, plain_m), (steady, steady_m) = runs[0.0], runs[1.0]
    assert not np.array_equal(plain, steady)
    for metrics in (plain_m, steady_m):
        assert metrics.linf_unit <= settings.epsilon + 1e-6
        assert metrics.reid_similarity_after < metrics.reid_similarity_before - 1e-3


def test_token_term_disrupts_the_middle_block_features(adversary: Adversary) -> None:
    image = _anatomy(np.random.default_rng(6), (48, 48)).astype(np.float32) * 4000
    model, cfg = adversary.reidentifiers[0], adversary.primary

    def middle_similarity(pixels: np.ndarray) -> float:
        with torch.no_grad(), middle_tokens(model) as tokens:
            model(preprocess(pixels, "DX", cfg).unsqueeze(0))
            model(preprocess(image, "DX", cfg).unsqueeze(0))
        return float(torch.nn.functional.cosine_similarity(*tokens, dim=-1).mean())

    sims = []
    for weight in (0.0, 20.0):
        settings = settings_for(
            "high", steps=8, eot_samples=1, lambda_mfm=0.0, lambda_vis=0.0, lambda_tokens=weight,
            **NO_TRANSFORMS,
        )  # fmt: skip
        new, _ = scrub_pixels(image, "DX", adversary, settings, torch.Generator().manual_seed(0))
        sims.append(middle_similarity(new))
    assert sims[1] < sims[0] - 0.005


def test_twin_gets_the_same_transform() -> None:
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    settings = settings_for("medium")
    std = torch.ones(3)
    alone, none = random_transform(x, 2, settings, std, torch.Generator().manual_seed(1))
    out, twin = random_transform(x, 2, settings, std, torch.Generator().manual_seed(1), x.clone())
    assert none is None
    torch.testing.assert_close(out, alone)
    torch.testing.assert_close(twin, out)
    with pytest.raises(InputError, match="twin"):
        random_transform(x, 2, settings, std, torch.Generator(), x[:2])


def test_pixel_overrides_parse_to_the_settings_types() -> None:
    overrides = parse_overrides(["lambda-mfm=2", "steps=30", "momentum=1"])
    assert overrides == {"lambda_mfm": 2.0, "steps": 30, "momentum": 1.0}
    assert isinstance(overrides["steps"], int) and settings_for("low", **overrides).steps == 30
    for bad, message in (
        ("steps=1.5", "needs an integer"),
        ("epsilom=1", "Unknown"),
        ("steps", "NAME"),
    ):
        with pytest.raises(InputError, match=message):
            parse_overrides([bad])


def test_ssim_and_psnr_sanity() -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5) and psnr(x, x) == float("inf")
    y = (x + 0.1).clamp(0, 1)
    assert float(ssim(x, y)) < 1.0
    y[1] = x[1]  # the second pair identical: per image, only the first falls below 1
    each = ssim(x, y, per_image=True)
    assert each.shape == (2,) and float(each[0]) < 1.0
    assert float(each[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(each.mean()) == pytest.approx(float(ssim(x, y)), abs=1e-6)
    y[1] = (x[1] + 0.1).clamp(0, 1)
    assert psnr(x, y) == pytest.approx(-10 * np.log10(float(((x - y) ** 2).mean())), rel=1e-5)
    with pytest.raises(InputError, match="equal"):
        ssim(x, y[:1])
    reference = kornia.metrics.ssim(x, y, 11, max_val=1.0)  # the same map, filtered per moment
    assert float(ssim(x, y)) == pytest.approx(float(reference.mean()), abs=1e-6)


def test_settings_validate_and_override() -> None:
    assert settings_for("high").epsilon > settings_for("low").epsilon
    assert settings_for("low", epsilon=0.2, steps=None).epsilon == 0.2
    with pytest.raises(InputError, match="strength"):
        settings_for("extreme")
    with pytest.raises(InputError, match="Unknown pixel setting"):
        settings_for("low", epsilom=0.1)
    with pytest.raises(InputError, match="epsilon"):
        PixelSettings(epsilon=0.0)
    with pytest.raises(InputError, match="negative"):
        PixelSettings(lambda_mfm=-1.0)


def test_batch_shares_passes_but_keeps_each_image_its_own(adversary: Adversary) -> None:
    rng = np.random.default_rng(11)
    images = [_anatomy(rng, (32, 32)).astype(np.float32) * 900 for _ in range(2)]
    images.append(np.full((32, 32), 3.0, np.float32))
    settings = settings_for("medium", **FAST)
    results = scrub_batch(images, "DX", adversary, settings, torch.Generator().manual_seed(0))
    for (new, metrics), image in zip(results[:2], images[:2], strict=True):
        assert not np.array_equal(new, image) and metrics.linf_unit <= settings.epsilon + 1e-6
        assert metrics.reid_similarity_after < 1.0
    np.testing.assert_array_equal(results[2][0], images[2])
    # an image's own gradient does not depend on its batch-mate
    still = settings_for(
        "medium",
        steps=2,
        eot_samples=1,
        blur_sigma=0.0,
        noise_std=0.0,
        shift=0.0,
        rotation_deg=0.0,
        rescale=0.0,
    )
    alone = scrub_pixels(
        images[0],
        "DX",
        adversary,
        still,
        torch.Generator(),
    )[0]
    paired = scrub_batch(
        images[:2],
        "DX",
        adversary,
        still,
        torch.Generator(),
    )[0][0]
    # (sign steps flip where a gradient is ~0 and batched float sums differ in the last bits)
    assert np.mean(np.isclose(alone, paired, atol=1e-2)) > 0.9
    with pytest.raises(InputError, match="one shape"):
        scrub_batch([images[0], images[0][:30]], "DX", adversary, settings, torch.Generator())


def _grey_record(encoding: Encoding, kind: Kind = "dicom") -> Record:
    pixels = np.zeros((1, 4), np.float32)
    return Record(
        "k",
        (Path("k"),),
        kind,
        pixels,
        "CT",
        np.dtype(np.uint16),
        12,
        "MONOCHROME2",
        encoding=encoding,
    )


def test_quantise_matches_the_stored_grid_by_hand() -> None:
    values = np.array([[-2000.0, -1023.4, 7.2, 9000.0]], np.float32)
    rescaled = Encoding(0, 4095, slopes=np.array([2.0]), intercepts=np.array([-1024.0]))
    # stored = round((v + 1024) / 2) clipped to [0, 4095], then back: 2 * stored - 1024
    expected = np.array([[-1024.0, -1024.0, 8.0, 7166.0]], np.float32)
    np.testing.assert_array_equal(quantise(_grey_record(rescaled), values), expected)
    inverted = Encoding(
        0, 255, slopes=np.array([1.0]), intercepts=np.array([0.0]), invert_pivot=255.0
    )
    np.testing.assert_array_equal(
        quantise(_grey_record(inverted), np.array([[-3.0, 0.4, 254.6, 300.0]], np.float32)),
        np.array([[0.0, 0.0, 255.0, 255.0]], np.float32),
    )
    lut = Encoding(0, 3, modality_lut=(0, np.array([0.0, 10.0, 20.0, 40.0])))
    np.testing.assert_array_equal(
        quantise(_grey_record(lut), np.array([[4.0, 6.0, 31.0, 99.0]], np.float32)),
        np.array([[0.0, 10.0, 40.0, 40.0]], np.float32),
    )
    png = Encoding(0, 255, pil_mode="L")
    np.testing.assert_array_equal(
        quantise(_grey_record(png, "png"), np.array([[-1.0, 2.5, 3.5, 256.0]], np.float32)),
        np.array([[0.0, 2.0, 4.0, 255.0]], np.float32),
    )
