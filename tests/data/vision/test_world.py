"""The vision world's geometry and renderer against independent references: meshes, closed-form depth, silhouettes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmseq.data.vision.objects import (CLASS_NAMES, Part, Shape, make_shape, part_intersect, part_mesh, part_sdf,
                                       sample_surface)  # fmt: skip
from mmseq.data.vision.render import render, tonemap
from mmseq.data.vision.world import (GROUND, SEMANTIC_CLASSES, SKY, Camera, Light, Scene, SceneObject,
                                     random_object)  # fmt: skip
from mmseq.errors import ConfigError, InputError

KINDS = {
    "sphere": Part("sphere", (0.7,)),
    "convex": Part("convex", vertices=np.array([[x, y, 0.0] for x in (-1, 1) for y in (-1, 1)] + [[0, 0, 1.5]])),
    "cylinder": Part("tube", (0.0, 0.6, 0.4)),
    "ring": Part("tube", (0.8, 0.2, 0.3)),
    "cone": Part("cone", (0.7, 1.4)),
    "torus": Part("torus", (0.8, 0.25)),
}


def _union_sdf(shape: Shape, points: np.ndarray) -> np.ndarray:
    out = []
    for part in shape.parts:
        local = (points - part.translation) @ part.rotation
        params = torch.from_numpy(np.tile(part.packed(), (len(points), 1)))
        out.append(part_sdf(part.kind, params, torch.from_numpy(local)).numpy())
    return np.min(out, axis=0)


def _mesh_first_hits(mesh, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Brute-force Moller-Trumbore over every triangle: the reference the analytic intersections are held to."""
    tri = mesh.triangles
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    pv = np.cross(dirs[:, None], e2)
    det = (e1 * pv).sum(-1)
    inv = 1.0 / np.where(np.abs(det) < 1e-14, 1e-14, det)
    tv = origins[:, None] - v0
    u = (tv * pv).sum(-1) * inv
    qv = np.cross(tv, e1)
    v = (dirs[:, None] * qv).sum(-1) * inv
    t = (e2 * qv).sum(-1) * inv
    ok = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9) & (np.abs(det) > 1e-14)
    return np.where(ok, t, np.inf).min(1)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_intersections_agree_with_a_fine_mesh_and_lie_on_the_surface(name):
    part = KINDS[name]
    rng = np.random.default_rng(0)
    n = 300
    origins = rng.normal(size=(n, 3))
    origins *= 4 / np.linalg.norm(origins, axis=1, keepdims=True)
    dirs = rng.uniform(-1, 1, (n, 3)) - origins
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    params = torch.from_numpy(np.tile(part.packed(), (n, 1)))
    t, normal = part_intersect(part.kind, params, torch.from_numpy(origins), torch.from_numpy(dirs))
    t, normal = t.numpy(), normal.numpy()
    reference = _mesh_first_hits(part_mesh(part, sections=256), origins, dirs)
    hit = np.isfinite(t)
    assert 60 < hit.sum() < n - 60
    assert (hit == np.isfinite(reference)).mean() >= 0.99
    both = hit & np.isfinite(reference)
    assert np.abs(t[both] - reference[both]).max() < 0.01  # the mesh's facets are the only difference
    points = origins + np.where(hit, t, 0)[:, None] * dirs
    sdf = part_sdf(part.kind, params, torch.from_numpy(points)).numpy()
    assert np.abs(sdf[hit]).max() < 1e-4
    step = 1e-6
    grad = np.stack([part_sdf(part.kind, params, torch.from_numpy(points + step * e)).numpy()
                     - part_sdf(part.kind, params, torch.from_numpy(points - step * e)).numpy()
                     for e in np.eye(3)], axis=1)  # fmt: skip
    grad /= np.linalg.norm(grad, axis=1, keepdims=True)
    assert (grad[hit] * normal[hit]).sum(1).min() > 0.999


@pytest.mark.parametrize("cls", CLASS_NAMES)
def test_every_class_is_sized_grounded_and_sampled_on_its_surface(cls):
    rng = np.random.default_rng(CLASS_NAMES.index(cls))
    shape = make_shape(cls, rng, 0.8)
    lo, hi = shape.bounds()
    assert abs((hi - lo).max() - 0.8) < 1e-9 and abs(lo[2]) < 1e-9
    assert abs(lo[0] + hi[0]) < 1e-9 and abs(lo[1] + hi[1]) < 1e-9
    points, normals, faces = sample_surface(shape, 600, rng)
    assert points.shape == normals.shape == (600, 3) and faces.shape == (600,)
    assert np.abs(_union_sdf(shape, points)).max() < 1e-6
    assert np.abs(np.linalg.norm(normals, axis=1) - 1).max() < 1e-6
    step = 1e-4 * shape.size
    assert (_union_sdf(shape, points + step * normals) > 0).mean() > 0.99  # outward
    assert (points >= lo - 1e-9).all() and (points <= hi + 1e-9).all()


def test_composite_samples_skip_interior_faces():
    shape = make_shape("stairs", np.random.default_rng(3), 1.0)
    points, _, _ = sample_surface(shape, 4000, np.random.default_rng(4))
    # the risers between the boxes are shared faces: no point lies strictly between two boxes' z ranges there
    deep = _union_sdf(shape, points - 1e-3 * np.array([0.0, 0.0, 1.0]))
    assert (deep < 0).mean() > 0.3  # most points sit on a top or side face above solid material
    inner = [p for p in shape.parts[1:]]
    for part in inner:  # nothing on the hidden back face of each lower step
        y_face = part.translation[1] - (part.vertices[:, 1].max())
        on_face = (np.abs(points[:, 1] - y_face) < 1e-9) & (points[:, 2] < part.bounds()[0][2] + 1e-9)
        assert not on_face.any()


def _sphere_scene(width=96, height=72, shadows_light=(0.3, -0.4, 0.85)) -> tuple[Scene, np.ndarray, float]:
    centre, radius = np.array([0.3, 0.2, 0.6]), 0.6
    shape = Shape("sphere", [Part("sphere", (radius,), translation=np.array([0.0, 0.0, radius]))], 2 * radius)
    obj = SceneObject(shape, np.array([centre[0], centre[1], 0.0]), 0.0, np.array([0.8, 0.2, 0.2]))
    camera = Camera.look_at([0.0, -3.0, 1.6], [0.2, 0.0, 0.5], 50.0, width, height)
    return Scene([obj], camera, Light(np.array(shadows_light))), centre, radius


def _rays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    cam = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1)
    world = cam @ camera.rotation  # rows: rotation.T @ d
    return cam, world / np.linalg.norm(world, axis=-1, keepdims=True)


def test_sphere_depth_profile_and_silhouette_match_the_closed_form():
    scene, centre, radius = _sphere_scene()
    out = render([scene], shadows=False)
    cam, dirs = _rays(scene.camera)
    w = scene.camera.position - centre
    b = dirs @ w
    disc = b * b - (w @ w - radius * radius)
    t = -b - np.sqrt(np.maximum(disc, 0))
    depth_ref = t / np.linalg.norm(cam, axis=-1)  # distance along the ray -> depth along the optical axis
    inside = disc > 0
    mask = out.instance[0].numpy() == 1
    margin = np.abs(np.sqrt(np.maximum(w @ w - b * b, 0)) - radius) > 2e-3  # not on the rim itself
    assert mask.sum() > 500
    assert (mask == inside)[margin].all()
    assert (out.semantic[0].numpy()[mask] == SEMANTIC_CLASSES.index("sphere")).all()
    depth = out.depth[0].numpy()
    assert np.abs(depth[mask & inside] - depth_ref[mask & inside]).max() < 1e-4
    # normals: the unit vector from the centre, seen in camera axes
    points = scene.camera.position + t[..., None] * dirs
    n_ref = (points - centre) / radius @ scene.camera.rotation.T
    assert np.abs(out.normal[0].numpy()[mask & inside] - n_ref[mask & inside]).max() < 1e-3


def test_ground_and_sky_pixels_have_plane_depth_up_normals_and_their_classes():
    scene, _, _ = _sphere_scene()
    scene.camera = Camera.look_at([0.0, -3.0, 1.6], [0.0, 0.0, 1.0], 60.0, 64, 48)  # horizon in view
    out = render([scene], shadows=False)
    cam, dirs = _rays(scene.camera)
    semantic = out.semantic[0].numpy()
    ground = semantic == GROUND
    sky = semantic == SKY
    assert ground.sum() > 100 and sky.sum() > 100
    assert (dirs[sky][:, 2] > 0).all() or (~np.isfinite(out.depth[0].numpy()[sky])).all()
    assert not np.isfinite(out.depth[0].numpy()[sky]).any() and (out.normal[0].numpy()[sky] == 0).all()
    t = -scene.camera.position[2] / dirs[..., 2]
    depth_ref = t / np.linalg.norm(cam, axis=-1)
    assert np.allclose(out.depth[0].numpy()[ground], depth_ref[ground], rtol=1e-5)
    up = scene.camera.rotation @ np.array([0.0, 0.0, 1.0])
    assert np.abs(out.normal[0].numpy()[ground] - up).max() < 1e-5
    assert (out.instance[0].numpy()[ground | sky] == 0).all()


def test_box_labels_end_exactly_at_its_silhouette():
    shape = make_shape("cube", np.random.default_rng(0), 0.9)
    obj = SceneObject(shape, np.array([0.1, 0.3, 0.0]), 0.4, np.array([0.2, 0.3, 0.9]))
    camera = Camera.look_at([1.5, -2.5, 1.8], [0.0, 0.3, 0.3], 55.0, 80, 64)
    out = render([Scene([obj], camera, Light(np.array([0.0, 0.0, 1.0])))], shadows=False)
    _, dirs = _rays(camera)
    (part,) = obj.world_parts()
    # slab test in numpy on the box's own planes, in its frame: an independent inside/outside reference
    o = (camera.position - part.translation) @ part.rotation
    d = dirs @ part.rotation
    half = part.vertices.max(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = (-half - o) / d, (half - o) / d
    t_in, t_out = np.minimum(a, b).max(-1), np.maximum(a, b).min(-1)
    inside = t_in <= t_out
    margin = np.abs(t_out - t_in) > 1e-3  # rays that graze an edge are left out
    mask = out.instance[0].numpy() == 1
    assert mask.sum() > 300
    assert (mask == inside)[margin | ~inside].all()


def test_batch_neighbours_change_nothing_and_intrinsics_are_returned():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(5)
        scenes = []
        for cls in ("torus", "chair"):
            obj = random_object(rng, cls, 0.9)
            camera = Camera.look_at([0.0, -2.5, 1.5], [0.0, 0.0, 0.3], 50.0, 48, 40)
            scenes.append(Scene([obj], camera, Light(np.array([0.4, -0.2, 0.9]))))
        alone = render(scenes[1:])
        together = render(scenes)
    finally:
        torch.set_num_threads(threads)
    for name in ("rgb", "radiance", "depth", "normal", "semantic", "instance"):
        assert torch.equal(getattr(alone, name)[0], getattr(together, name)[1]), name
    assert np.allclose(together.intrinsics[1].numpy(), scenes[1].camera.intrinsics)
    assert np.allclose(together.extrinsics[1].numpy(), scenes[1].camera.extrinsics)


def test_shadows_darken_the_ground_away_from_the_sun():
    scene, centre, radius = _sphere_scene(shadows_light=(0.0, 1.0, 1.0))  # sun behind the sphere, 45 degrees up
    lit, shaded = render([scene], shadows=False), render([scene], shadows=True)
    # the ground point on the far side of the sphere from the sun, on the line through its centre
    direction = np.array([0.0, 1.0, 1.0]) / math.sqrt(2)
    ground = centre - centre[2] / direction[2] * direction
    u, v, _ = scene.camera.project(ground[None])[0]
    px, py = int(u), int(v)
    assert lit.semantic[0, py, px] == GROUND
    assert shaded.rgb[0, py, px].float().mean() < 0.7 * lit.rgb[0, py, px].float().mean()


def test_tonemap_is_the_srgb_curve_correctly_rounded():
    lin = torch.tensor([0.0, 0.0031308, 0.2140, 0.5, 1.0, 7.0])
    ref = np.where(lin.numpy() <= 0.0031308, 12.92 * lin.numpy(), 1.055 * np.power(lin.numpy(), 1 / 2.4) - 0.055)
    assert tonemap(lin[:, None].expand(-1, 3))[:, 0].tolist() == np.round(np.clip(ref, 0, 1) * 255).tolist()


def test_user_mistakes_raise_clear_errors():
    with pytest.raises(ConfigError, match="Did you mean 'torus'"):
        make_shape("toros", np.random.default_rng(0), 1.0)
    with pytest.raises(InputError, match="at least one scene"):
        render([])
    a, _, _ = _sphere_scene(32, 24)
    b, _, _ = _sphere_scene(40, 24)
    with pytest.raises(InputError, match="same image size"):
        render([a, b])


def test_fog_follows_koschmieder_along_the_ray_and_replaces_the_sky():
    scene, _, _ = _sphere_scene(64, 48)
    scene.camera = Camera.look_at([0.0, -3.0, 1.6], [0.0, 0.0, 1.0], 60.0, 64, 48)  # sky, ground and the sphere
    clear = render([scene], shadows=False)
    scene.fog_density, scene.fog_rgb = 0.4, np.array([0.7, 0.72, 0.75])
    foggy = render([scene], shadows=False)
    cam, _ = _rays(scene.camera)
    distance = clear.depth[0].numpy() * np.linalg.norm(cam, axis=-1)  # depth along the axis -> along the ray
    transmit = np.exp(-0.4 * distance)[..., None]  # 0 for the sky (infinite distance)
    airlight = (np.where(scene.fog_rgb <= 0.04045, scene.fog_rgb / 12.92, ((scene.fog_rgb + 0.055) / 1.055) ** 2.4))
    expected = clear.radiance[0].numpy() * transmit + airlight * (1 - transmit)
    assert np.abs(foggy.radiance[0].numpy() - expected).max() < 1e-5
    sky = clear.semantic[0].numpy() == SKY
    assert sky.sum() > 50 and np.allclose(foggy.radiance[0].numpy()[sky], airlight, atol=1e-6)
    for name in ("depth", "semantic", "instance"):  # fog changes the picture, not the geometry
        assert torch.equal(getattr(foggy, name), getattr(clear, name)), name
