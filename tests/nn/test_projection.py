import numpy as np
import pytest
import torch

from mmseq.errors import InputError
from mmseq.nn.projection import IMAGENET_MEAN, IMAGENET_STD, back_project, project_depth, view_points

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, STD = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]


def reference_pixels(points, size=224):
    """One cloud's centre pixel per point, step by step as I2P-MAE's proj2img / I2P describe it."""
    low, high = points.min(0), points.max(0)
    grid = (high - low)[:2].max() / (size - 3)
    cell = np.floor((points[:, :2] - low[:2]) / grid)
    dense_low, dense_high = cell.min(0) - 2 + 1, cell.max(0) + 2 + 1
    centre = np.floor((dense_high + dense_low) / 2)
    return cell + 1 + (size / 2 - centre - 1)


def reference_image(points, size=224, splat=5):
    pixels = reference_pixels(points, size)
    canvas = np.zeros((size, size))
    half = splat // 2
    for (row, col), depth in zip(pixels.astype(int), points[:, 2]):
        for dr in range(-half, half + 1):
            for dc in range(-half, half + 1):
                r, c = row + dr, col + dc
                r, c = r + (r < 0) - (r > size - 1), c + (c < 0) - (c > size - 1)
                canvas[r, c] += depth
    return (1 / (1 + np.exp(-canvas)) - MEAN) / STD


def test_view_permutations():
    x = torch.rand(2, 7, 3, dtype=torch.float64)
    views = view_points(x)
    assert views.shape == (6, 7, 3)
    torch.testing.assert_close(views[:2], x)
    torch.testing.assert_close(views[2:4], torch.stack([x[..., 2], x[..., 0], x[..., 1]], -1))
    torch.testing.assert_close(views[4:], torch.stack([x[..., 1], x[..., 2], x[..., 0]], -1))


def test_projection_equals_step_by_step_reference():
    x = torch.rand(2, 60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images, _ = project_depth(view_points(x))
    assert images.shape == (6, 3, 224, 224)
    views = view_points(x).numpy()
    for i in range(6):
        np.testing.assert_allclose(images[i].numpy(), reference_image(views[i]), rtol=1e-12, atol=1e-12)


def test_known_points_land_in_the_right_pixels():
    # x spans 221 pixels of exactly 0.25, y half of it: rows 1 and 222 (no offset), columns centred by 55.
    points = torch.tensor([[[0.0, 0.0, 0.7], [55.25, 27.5, -0.3]]], dtype=torch.float64)
    images, geometry = project_depth(points)
    assert geometry.offset.tolist() == [[0, 55]]
    expected = (1 / (1 + np.exp(-np.array([0.7, -0.3])))[:, None] - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    empty = (0.5 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    for (row, col), inward, value in zip([(1, 56), (222, 166)], [1, -1], expected):
        np.testing.assert_allclose(images[0, :, row, col].numpy(), value)
        np.testing.assert_allclose(images[0, :, row + 2 * inward, col - 2].numpy(), value)  # inside the splat
        np.testing.assert_allclose(images[0, :, row, col + 3].numpy(), empty)  # outside it
        np.testing.assert_allclose(images[0, :, row + 3 * inward, col].numpy(), empty)


def test_back_projection_reads_each_points_pixel():
    x = torch.rand(3, 80, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    views = view_points(x)
    images, geometry = project_depth(views)
    index_map = torch.arange(224 * 224, dtype=torch.float64).view(1, 1, 224, 224).expand(9, 1, -1, -1)
    got = back_project(views, index_map, geometry)[..., 0]
    for i in range(9):
        rows, cols = reference_pixels(views[i].numpy()).T
        np.testing.assert_array_equal(got[i].numpy(), rows * 224 + cols)
    # the projected image's own value comes back at every point
    values = back_project(views, images, geometry)
    for i in range(9):
        rows, cols = reference_pixels(views[i].numpy()).astype(int).T
        torch.testing.assert_close(values[i], images[i][:, rows, cols].T)


def test_back_projection_of_a_patch_map():
    x = torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(2))
    views = view_points(x)
    _, geometry = project_depth(views)
    patches = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 2, 14, 14)  # one constant per image
    got = back_project(views, patches, geometry)
    assert got.shape == (6, 50, 2)
    torch.testing.assert_close(got, torch.arange(6.0).view(6, 1, 1).expand(6, 50, 2))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(InputError, match="points must be a tensor of shape \\[B, N, 3\\]"):
        project_depth(torch.rand(5, 3))
    with pytest.raises(InputError, match="splat"):
        project_depth(torch.rand(1, 5, 3), splat=4)
    _, geometry = project_depth(torch.rand(1, 5, 3))
    with pytest.raises(InputError, match="maps must have shape \\[B=1"):
        back_project(torch.rand(1, 5, 3), torch.rand(2, 1, 14, 14), geometry)
