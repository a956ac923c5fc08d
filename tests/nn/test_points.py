import numpy as np
import pytest
import torch

from mmseq.errors import InputError
from mmseq.nn.points import (PointTokenEmbedding, chamfer_distance_l1, chamfer_distance_l2, chamfer_square_distances,
                             farthest_point_sample, group_points, interpolate_features, knn, nearest_neighbours)

pytestmark = pytest.mark.usefixtures("one_thread")


def cloud(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def sq_dist_np(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def fps_reference(points, npoint, start):
    """Direct definition: the next pick maximises the distance to the nearest earlier pick."""
    picks = [start]
    for _ in range(npoint - 1):
        nearest = sq_dist_np(points, points[picks]).min(axis=1)
        picks.append(int(np.argmax(nearest)))
    return picks


def min_pairwise(points):
    d = sq_dist_np(points, points)
    return d[~np.eye(len(points), dtype=bool)].min()


def test_fps_equals_direct_reference_from_point_zero():
    x = cloud(3, 200, 3)
    picks = farthest_point_sample(x, 32)
    for b in range(3):
        assert picks[b].tolist() == fps_reference(x[b].numpy(), 32, 0)


def test_fps_random_start_is_seeded_and_follows_the_reference():
    x = cloud(2, 150, 3, seed=1)
    picks = farthest_point_sample(x, 20, random_start=True, generator=torch.Generator().manual_seed(7))
    again = farthest_point_sample(x, 20, random_start=True, generator=torch.Generator().manual_seed(7))
    starts = torch.randint(150, (2, 1), generator=torch.Generator().manual_seed(7))
    assert torch.equal(picks, again) and torch.equal(picks[:, :1], starts)
    for b in range(2):
        assert picks[b].tolist() == fps_reference(x[b].numpy(), 20, int(starts[b]))


def test_fps_picks_are_more_spread_than_random_picks():
    x = cloud(1, 500, 3, seed=2, dtype=torch.float32)
    picks = farthest_point_sample(x, 24)[0]
    assert len(set(picks.tolist())) == 24
    rng = np.random.default_rng(0)
    random_best = max(min_pairwise(x[0].numpy()[rng.choice(500, 24, replace=False)]) for _ in range(50))
    assert min_pairwise(x[0, picks].numpy()) >= random_best


def test_knn_equals_brute_force():
    q, p = cloud(2, 40, 3, seed=3), cloud(2, 90, 3, seed=4)
    dist, index = knn(q, p, 5)
    for b in range(2):
        d = sq_dist_np(q[b].numpy(), p[b].numpy())
        ref = np.argsort(d, axis=1, kind="stable")[:, :5]
        np.testing.assert_array_equal(index[b].numpy(), ref)
        np.testing.assert_allclose(dist[b].numpy(), np.take_along_axis(d, ref, 1), rtol=1e-12, atol=1e-14)


def test_chunked_equals_unchunked():
    q, p = cloud(2, 64, 3, seed=5, dtype=torch.float32), cloud(2, 70, 3, seed=6, dtype=torch.float32)
    for small in (1, 150, 1000):
        assert torch.equal(knn(q, p, 4)[1], knn(q, p, 4, max_elements=small)[1])
        for whole, chunked in zip(nearest_neighbours(q, p), nearest_neighbours(q, p, max_elements=small)):
            assert torch.equal(whole, chunked)
        assert torch.equal(chamfer_distance_l2(q, p), chamfer_distance_l2(q, p, max_elements=small))


def test_chamfer_equals_brute_force():
    a, b = cloud(3, 50, 3, seed=7), cloud(3, 37, 3, seed=8)
    d = [sq_dist_np(a[i].numpy(), b[i].numpy()) for i in range(3)]
    dist1 = np.stack([x.min(axis=1) for x in d])
    dist2 = np.stack([x.min(axis=0) for x in d])
    got1, got2 = chamfer_square_distances(a, b)
    np.testing.assert_allclose(got1.numpy(), dist1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got2.numpy(), dist2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(chamfer_distance_l2(a, b).item(), dist1.mean() + dist2.mean(), rtol=1e-12)
    np.testing.assert_allclose(chamfer_distance_l1(a, b).item(),
                               (np.sqrt(dist1).mean() + np.sqrt(dist2).mean()) / 2, rtol=1e-12)


@pytest.mark.parametrize("loss", [chamfer_distance_l1, chamfer_distance_l2])
def test_chamfer_gradient(loss):
    a = cloud(2, 6, 3, seed=9).requires_grad_()
    b = cloud(2, 5, 3, seed=10).requires_grad_()
    assert torch.autograd.gradcheck(loss, (a, b))


def test_grouping_centres_and_normalisation():
    x = cloud(2, 120, 3, seed=11)
    groups = group_points(x, 10, 8)
    centre_index = farthest_point_sample(x, 10)
    for b in range(2):
        torch.testing.assert_close(groups.centres[b], x[b, centre_index[b]])
        torch.testing.assert_close(groups.neighbourhoods[b] + groups.centres[b, :, None], x[b, groups.index[b]])
        d = sq_dist_np(groups.centres[b].numpy(), x[b].numpy())
        np.testing.assert_array_equal(groups.index[b].numpy(), np.argsort(d, axis=1, kind="stable")[:, :8])
    assert torch.equal(groups.index[..., 0], centre_index)  # each centre is its own nearest point
    assert groups.neighbourhoods[..., 0, :].abs().max() == 0


def test_feature_propagation_equals_inverse_distance_formula():
    query, known = cloud(2, 30, 3, seed=12), cloud(2, 9, 3, seed=13)
    features = cloud(2, 9, 4, seed=14)
    got = interpolate_features(query, known, features)
    for b in range(2):
        d = sq_dist_np(query[b].numpy(), known[b].numpy())
        near = np.argsort(d, axis=1)[:, :3]
        w = 1 / (np.take_along_axis(d, near, 1) + 1e-8)
        ref = (features[b].numpy()[near] * (w / w.sum(1, keepdims=True))[..., None]).sum(1)
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=1e-10)
    one = interpolate_features(query, known[:, :1], features[:, :1])
    torch.testing.assert_close(one, features[:, :1].expand(-1, 30, -1))


def test_token_embedding_layout_matches_official_keys_and_ignores_point_order():
    first = PointTokenEmbedding(3, 96)
    shapes = {k: tuple(v.shape) for k, v in first.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert shapes["first_conv.0.weight"] == (128, 3, 1) and shapes["first_conv.3.weight"] == (256, 128, 1)
    assert shapes["second_conv.0.weight"] == (512, 512, 1) and shapes["second_conv.3.weight"] == (96, 512, 1)
    assert shapes["first_conv.1.running_mean"] == (128,) and shapes["second_conv.1.weight"] == (512,)
    merge = PointTokenEmbedding(96, 192).state_dict()
    assert tuple(merge["first_conv.0.weight"].shape) == (96, 96, 1)
    assert tuple(merge["second_conv.0.weight"].shape) == (192, 192, 1)
    assert tuple(merge["second_conv.3.weight"].shape) == (192, 192, 1)
    first.eval()
    groups = torch.randn(2, 5, 16, 3)
    tokens = first(groups)
    assert tokens.shape == (2, 5, 96)
    torch.testing.assert_close(first(groups[:, :, torch.randperm(16)]), tokens)


def test_bad_inputs_raise_clear_errors():
    x = cloud(1, 10, 3)
    with pytest.raises(InputError, match="npoint must be in \\[1, N=10\\]"):
        farthest_point_sample(x, 11)
    with pytest.raises(InputError, match="k must be in \\[1, N=10\\]"):
        knn(x, x, 11)
    with pytest.raises(InputError, match="group_size"):
        group_points(x, 4, 12)
    with pytest.raises(InputError, match="points must be a tensor of shape \\[B, N, 3\\]"):
        farthest_point_sample(torch.rand(10, 3), 2)
    with pytest.raises(InputError, match="same batch size"):
        chamfer_distance_l2(x, cloud(2, 10, 3))
    with pytest.raises(InputError, match="floating-point"):
        knn(torch.ones(1, 4, 3, dtype=torch.long), x, 2)
    with pytest.raises(InputError, match="known_features"):
        interpolate_features(x, x, torch.rand(1, 9, 2))
    with pytest.raises(InputError, match="groups must have shape"):
        PointTokenEmbedding(3, 8)(torch.rand(1, 4, 3))
