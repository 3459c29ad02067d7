import numpy as np
import pytest
import torch

from deid.errors import InputError
from reid_model.config import PreprocessConfig
from reid_model.preprocess import preprocess, scale_intensity, to_model_input

CFG = PreprocessConfig(
    img_size=16,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    interpolation="bilinear",
    low_pct=0.0,
    high_pct=100.0,
)


def _unnormalise(x):
    return x * 0.25 + 0.5


@pytest.mark.parametrize(
    ("shape", "modality", "expected"),
    [
        ((20, 20), "CR", (3, 16, 16)),
        ((20, 20, 3), "OP", (3, 16, 16)),
        ((20, 20, 4), "OP", (3, 16, 16)),
        ((5, 20, 20), "CT", (5, 3, 16, 16)),
        ((3, 20, 20), "MR", (3, 3, 16, 16)),  # a 3-slice MR stack is not a colour image
        ((2, 20, 20, 3), "OP", (2, 3, 16, 16)),
    ],
)
def test_layouts_give_the_documented_shapes(shape, modality, expected):
    pixels = np.random.default_rng(0).integers(0, 4096, size=shape).astype(np.uint16)
    out = preprocess(pixels, modality, CFG)
    assert out.shape == expected and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_percentile_scaling_is_robust_to_outliers():
    cfg = PreprocessConfig(low_pct=1.0, high_pct=99.0)
    pixels = np.linspace(0, 1000, 10_000).astype(np.float32)
    pixels[0], pixels[-1] = -1e6, 1e6  # a dead and a hot pixel
    scaled = scale_intensity(pixels, cfg)
    low, high = np.percentile(pixels, [1.0, 99.0])
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    np.testing.assert_allclose(scaled[5000], (pixels[5000] - low) / (high - low), rtol=1e-5)


def test_a_volume_is_scaled_as_a_whole_not_per_slice():
    vol = np.stack([np.full((8, 8), -1000.0), np.full((8, 8), 40.0), np.full((8, 8), 1000.0)])
    out = _unnormalise(preprocess(vol, "CT", CFG))
    assert out.shape == (3, 3, 16, 16)
    torch.testing.assert_close(out[:, 0].mean(dim=(1, 2)), torch.tensor([0.0, 0.52, 1.0]))


def test_grayscale_is_repeated_and_colour_is_kept():
    gray = np.arange(64, dtype=np.float32).reshape(8, 8)
    out = preprocess(gray, "DX", CFG)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[1], out[2])
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    out = _unnormalise(preprocess(rgb, "OP", CFG))
    assert out[0].min() == 1.0 and out[1].max() == 0.0 and out[2].max() == 0.0


def test_non_square_images_are_padded_not_stretched():
    wide = np.ones((8, 16), dtype=np.float32)
    wide[0, 0] = 0.0  # so the percentile range is not empty
    out = _unnormalise(preprocess(wide, "CR", CFG))
    # 8 x 16 is padded to 16 x 16 with 4 zero rows above and below
    assert out[0, :3].abs().max() < 1e-6 and out[0, -3:].abs().max() < 1e-6
    assert out[0, 5:11, 2:].min() > 0.99


def test_constant_and_non_finite_pixels():
    out = _unnormalise(preprocess(np.full((8, 8), 7.0), "CR", CFG))
    assert out.abs().max() < 1e-6
    pixels = np.arange(64, dtype=np.float32).reshape(8, 8)
    pixels[3, 3] = np.nan
    assert torch.isfinite(preprocess(pixels, "CR", CFG)).all()
    with pytest.raises(InputError, match="no finite"):
        preprocess(np.full((4, 4), np.nan), "CR", CFG)


def test_bad_shapes_and_dtypes_are_explained():
    with pytest.raises(InputError, match=r"\(H, W\)"):
        preprocess(np.zeros(10), "CR", CFG)
    with pytest.raises(InputError, match="numeric"):
        preprocess(np.array([["a"]]), "CR", CFG)
    with pytest.raises(InputError, match="expects"):
        to_model_input(torch.zeros(3, 8, 8), CFG)


def test_same_input_gives_the_same_output_and_the_tail_is_differentiable():
    pixels = np.random.default_rng(1).normal(size=(12, 10)).astype(np.float32)
    torch.testing.assert_close(preprocess(pixels, "CR", CFG), preprocess(pixels.copy(), "CR", CFG))
    x = torch.rand(1, 3, 6, 4, dtype=torch.float64, requires_grad=True)
    cfg = PreprocessConfig(img_size=5, interpolation="bilinear")
    assert torch.autograd.gradcheck(lambda t: to_model_input(t, cfg), (x,))
