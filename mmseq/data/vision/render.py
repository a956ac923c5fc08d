"""A batched analytic ray caster for :class:`~mmseq.data.vision.world.Scene`: RGB, depth, normals, classes, instances.

One call renders a batch of scenes of one image size. For every pixel a ray leaves the camera; it is intersected
exactly with the ground plane and with every object part whose projected bounding box covers the pixel (the
part intersections of :mod:`mmseq.data.vision.objects`, in closed form except the sphere-traced torus). All
(pixel, part) pairs of a batch are evaluated together per part kind, and the nearest hit per pixel is found with
one ``scatter_reduce``. A second set of rays from every visible point towards the sun, culled by the parts'
bounding spheres, decides shadows. Shading is Blinn-Phong under the sun plus a sky/ground ambient term, on colours
given in sRGB and converted to linear radiance; a scene's fog (``Scene.fog_density``) attenuates it along the ray;
:func:`tonemap` turns radiance into 8-bit sRGB.

Outputs (:class:`Rendering`) per pixel: RGB, linear radiance, metric depth along the optical axis, the unit
surface normal in camera coordinates, the semantic class (index into ``SEMANTIC_CLASSES``: 0 sky, 1 ground,
2 wall, then the object classes) and the instance id (0 for sky and ground, ``k`` for ``scene.objects[k - 1]``),
plus each camera's intrinsics and world-to-camera extrinsics.

Every value is computed elementwise per pixel (no reduction whose order depends on the batch), so a pixel's value
does not depend on the other scenes of its batch; with one torch thread it does not depend on anything else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mmseq.data.vision.objects import PART_KINDS, part_intersect
from mmseq.data.vision.world import GROUND, MATERIALS, SKY, Scene, srgb_to_linear
from mmseq.errors import InputError

PAIR_CHUNK = 1 << 20  # (ray, part) pairs evaluated at once: bounds peak memory to a few hundred MB
_NEAR = 1e-3


@dataclass
class Rendering:
    """A batch of rendered images (``B`` scenes, ``H x W`` pixels).

    Attributes:
        rgb: ``[B, H, W, 3]`` uint8 sRGB.
        radiance: ``[B, H, W, 3]`` float32 linear radiance (fog included) before exposure and tone mapping.
        depth: ``[B, H, W]`` float32 metres along the optical axis (``inf`` where the ray sees the sky).
        normal: ``[B, H, W, 3]`` float32 unit surface normals in camera coordinates (zero for the sky).
        semantic: ``[B, H, W]`` int64 index into ``SEMANTIC_CLASSES``.
        instance: ``[B, H, W]`` int64: 0 for sky and ground, ``k`` for ``scene.objects[k - 1]``.
        intrinsics: ``[B, 3, 3]`` float64 camera matrices ``K``.
        extrinsics: ``[B, 4, 4]`` float64 world-to-camera transforms.
    """

    rgb: torch.Tensor
    radiance: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    semantic: torch.Tensor
    instance: torch.Tensor
    intrinsics: torch.Tensor
    extrinsics: torch.Tensor


# ---------------------------------------------------------------------------------------------- tone mapping
def _srgb_thresholds() -> torch.Tensor:
    # the linear value at which the 8-bit code k-1 turns into k: the sRGB curve inverted at (k - 0.5) / 255
    codes = (np.arange(1, 256) - 0.5) / 255.0
    return torch.tensor(srgb_to_linear(codes), dtype=torch.float32)


_THRESHOLDS = _srgb_thresholds()


def tonemap(radiance: torch.Tensor, exposure: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Linear radiance to 8-bit sRGB, correctly rounded, clipping above 1 (exposure multiplies first).

    Args:
        radiance: ``[..., 3]`` linear radiance.
        exposure: Scalar, or a tensor that broadcasts against ``radiance``.

    Returns:
        ``[..., 3]`` uint8.
    """
    scaled = radiance.float() * exposure
    return torch.bucketize(scaled.contiguous(), _THRESHOLDS.to(scaled.device), right=True).to(torch.uint8)


# ------------------------------------------------------------------------------------------------- helpers
def _rotate(matrix: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``matrix @ v`` per row, written out (``[N, 3, 3]`` x ``[N, 3]``)."""
    return torch.stack([matrix[:, i, 0] * v[:, 0] + matrix[:, i, 1] * v[:, 1] + matrix[:, i, 2] * v[:, 2]
                        for i in range(3)], dim=1)  # fmt: skip


def _rotate_t(matrix: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``matrix.T @ v`` per row."""
    return torch.stack([matrix[:, 0, i] * v[:, 0] + matrix[:, 1, i] * v[:, 1] + matrix[:, 2, i] * v[:, 2]
                        for i in range(3)], dim=1)  # fmt: skip


def _normalise(v: torch.Tensor) -> torch.Tensor:
    norm = torch.sqrt(v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1] + v[:, 2] * v[:, 2]).clamp(min=1e-20)
    return v / norm[:, None]


def _hash01(cells: torch.Tensor) -> torch.Tensor:
    """A deterministic pseudo-random number in [0, 1) per integer cell ``[N, 3]``."""
    h = cells[:, 0] * 73856093 ^ cells[:, 1] * 19349663 ^ cells[:, 2] * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65536.0


@dataclass
class _Parts:
    """Every part of a batch, world-posed, as flat tensors (sorted by kind)."""

    kind: list[str]
    params: torch.Tensor  # [P, PARAM_SIZE]
    rotation: torch.Tensor  # [P, 3, 3] local -> world
    translation: torch.Tensor  # [P, 3]
    lo: torch.Tensor  # [P, 3] local bounds
    hi: torch.Tensor
    scene: torch.Tensor  # [P] long
    owner: torch.Tensor  # [P] long: object index + 1


def _gather_parts(scenes: Sequence[Scene], device: torch.device) -> _Parts:
    rows = []
    for b, scene in enumerate(scenes):
        for j, obj in enumerate(scene.objects):
            for part in obj.world_parts():
                rows.append((PART_KINDS.index(part.kind), b, j + 1, part))
    rows.sort(key=lambda r: r[0])  # stable: kind, then scene, object and part order
    parts = [r[3] for r in rows]

    def tensor(values, dtype=torch.float32):
        return torch.tensor(np.array(values), dtype=dtype, device=device)

    if not parts:
        empty = torch.zeros(0, 3, device=device)
        return _Parts([], torch.zeros(0, 24, device=device), torch.zeros(0, 3, 3, device=device), empty, empty,
                      empty, torch.zeros(0, dtype=torch.long, device=device),
                      torch.zeros(0, dtype=torch.long, device=device))  # fmt: skip
    bounds = np.stack([p.local_bounds() for p in parts])
    return _Parts([p.kind for p in parts], tensor([p.packed() for p in parts]), tensor([p.rotation for p in parts]),
                  tensor([p.translation for p in parts]), tensor(bounds[:, 0]), tensor(bounds[:, 1]),
                  tensor([r[1] for r in rows], torch.long), tensor([r[2] for r in rows], torch.long))  # fmt: skip


def _corners(parts: _Parts) -> torch.Tensor:
    """``[P, 8, 3]`` world corners of every part's local bounding box."""
    lo, hi = parts.lo, parts.hi
    picks = torch.tensor([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], device=lo.device, dtype=lo.dtype)
    local = lo[:, None] + picks[None] * (hi - lo)[:, None]
    flat = local.reshape(-1, 3)
    rot = parts.rotation.repeat_interleave(8, dim=0)
    return (_rotate(rot, flat) + parts.translation.repeat_interleave(8, dim=0)).view(-1, 8, 3)


def _screen_rects(parts: _Parts, cam_r: torch.Tensor, cam_p: torch.Tensor, k: torch.Tensor, width: int,
                  height: int) -> torch.Tensor:  # fmt: skip
    """``[P, 4]`` conservative pixel rectangles ``(x0, x1, y0, y1)`` (end-exclusive) of the parts' bounds."""
    corners = _corners(parts)
    scene = parts.scene.repeat_interleave(8)
    cam = _rotate(cam_r[scene], corners.reshape(-1, 3) - cam_p[scene]).view(-1, 8, 3)
    z = cam[..., 2]
    kk = k[parts.scene]
    zs = z.clamp(min=_NEAR)
    u = kk[:, 0, 0, None] * cam[..., 0] / zs + kk[:, 0, 2, None]
    v = kk[:, 1, 1, None] * cam[..., 1] / zs + kk[:, 1, 2, None]
    x0 = torch.floor(u.min(1).values - 0.5)
    x1 = torch.ceil(u.max(1).values - 0.5) + 1
    y0 = torch.floor(v.min(1).values - 0.5)
    y1 = torch.ceil(v.max(1).values - 0.5) + 1
    straddles = z.min(1).values < _NEAR  # a corner behind the camera: the projection is unbounded
    x0 = torch.where(straddles, torch.zeros_like(x0), x0).clamp(0, width)
    x1 = torch.where(straddles, torch.full_like(x1, width), x1).clamp(0, width)
    y0 = torch.where(straddles, torch.zeros_like(y0), y0).clamp(0, height)
    y1 = torch.where(straddles, torch.full_like(y1, height), y1).clamp(0, height)
    behind = z.max(1).values < _NEAR
    rects = torch.stack([x0, x1, y0, y1], dim=1).long()
    rects[behind] = 0
    return rects


def _kind_runs(kinds: list[str]) -> list[tuple[str, int, int]]:
    runs, start = [], 0
    for i in range(1, len(kinds) + 1):
        if i == len(kinds) or kinds[i] != kinds[start]:
            runs.append((kinds[start], start, i))
            start = i
    return runs


def _intersect_pairs(parts: _Parts, pair_part: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor):
    """Intersect world rays with the part named per pair; ``(t [N], world-unrotated local normal [N, 3])``."""
    t = torch.full((len(pair_part),), math.inf, device=origins.device)
    normal = torch.zeros(len(pair_part), 3, device=origins.device)
    if len(pair_part) == 0:
        return t, normal
    kind_index = torch.tensor([PART_KINDS.index(k) for k in parts.kind], device=origins.device)[pair_part]
    for kind_id, kind in enumerate(PART_KINDS):
        sel = torch.nonzero(kind_index == kind_id).squeeze(1)
        if sel.numel() == 0:
            continue
        pp = pair_part[sel]
        rot = parts.rotation[pp]
        o_local = _rotate_t(rot, origins[sel] - parts.translation[pp])
        d_local = _rotate_t(rot, dirs[sel])
        t_k, n_k = part_intersect(kind, parts.params[pp], o_local, d_local)
        t[sel] = t_k
        normal[sel] = n_k
    return t, normal


# -------------------------------------------------------------------------------------------------- render
def render(scenes: Sequence[Scene], shadows: bool = True, device: str | torch.device = "cpu") -> Rendering:
    """Render a batch of scenes that share one image size.

    Args:
        scenes: The scenes; every camera must have the same ``width`` and ``height``.
        shadows: Trace rays towards the sun (about half the time of a render goes there).
        device: Torch device to compute on.

    Returns:
        The :class:`Rendering` of the batch.
    """
    if not scenes:
        raise InputError("render() needs at least one scene")
    width, height = scenes[0].camera.width, scenes[0].camera.height
    if any((s.camera.width, s.camera.height) != (width, height) for s in scenes):
        raise InputError("every scene of a render() batch needs the same image size; "
                         f"got {sorted({(s.camera.width, s.camera.height) for s in scenes})}")  # fmt: skip
    device = torch.device(device)
    batch, hw = len(scenes), width * height

    def f32(values) -> torch.Tensor:
        return torch.tensor(np.array(values), dtype=torch.float32, device=device)

    k64 = np.stack([s.camera.intrinsics for s in scenes])
    k = f32(k64)
    cam_r, cam_p = f32([s.camera.rotation for s in scenes]), f32([s.camera.position for s in scenes])

    # primary rays: one per pixel centre, world directions of unit length
    u = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    v = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    x = (uu.reshape(1, -1) - k[:, 0, 2, None]) / k[:, 0, 0, None]
    y = (vv.reshape(1, -1) - k[:, 1, 2, None]) / k[:, 1, 1, None]
    inv_norm = 1.0 / torch.sqrt(x * x + y * y + 1.0)  # = depth / distance along the ray
    d_cam = torch.stack([x * inv_norm, y * inv_norm, inv_norm], dim=-1).reshape(-1, 3)
    ray_scene = torch.arange(batch, device=device).repeat_interleave(hw)
    dirs = _normalise(_rotate_t(cam_r[ray_scene], d_cam))
    origins = cam_p[ray_scene]

    # the ground plane z = 0 (seen from above)
    down = (dirs[:, 2] < -1e-9) & (origins[:, 2] > 0)
    t_best = torch.where(down, -origins[:, 2] / torch.where(down, dirs[:, 2], -torch.ones_like(dirs[:, 2])),
                         torch.full_like(dirs[:, 2], math.inf))  # fmt: skip

    # every (pixel, part) pair inside the part's screen rectangle, chunked
    parts = _gather_parts(scenes, device)
    rects = _screen_rects(parts, cam_r, cam_p, k, width, height) if parts.kind else torch.zeros(0, 4).long()
    widths, heights = (rects[:, 1] - rects[:, 0]).clamp(min=0), (rects[:, 3] - rects[:, 2]).clamp(min=0)
    counts = widths * heights
    hit_ray, hit_t, hit_part, hit_normal = [], [], [], []
    start = 0
    while start < len(counts):
        stop, total = start, 0
        while stop < len(counts) and (stop == start or total + int(counts[stop]) <= PAIR_CHUNK):
            total += int(counts[stop])
            stop += 1
        idx = torch.arange(start, stop, device=device)
        pair_part = idx.repeat_interleave(counts[start:stop])
        if len(pair_part):
            offsets = torch.cumsum(counts[start:stop], 0) - counts[start:stop]
            j = torch.arange(len(pair_part), device=device) - offsets.repeat_interleave(counts[start:stop])
            w = widths[pair_part]
            px, py = rects[pair_part, 0] + j % w, rects[pair_part, 2] + j // w
            ray = parts.scene[pair_part] * hw + py * width + px
            t, n = _intersect_pairs(parts, pair_part, origins[ray], dirs[ray])
            keep = torch.isfinite(t)
            hit_ray.append(ray[keep])
            hit_t.append(t[keep])
            hit_part.append(pair_part[keep])
            hit_normal.append(n[keep])
        start = stop
    winner = torch.zeros(batch * hw, dtype=torch.long, device=device)  # index of the winning hit + 1
    if hit_ray:
        hit_ray, hit_t = torch.cat(hit_ray), torch.cat(hit_t)
        hit_part, hit_normal = torch.cat(hit_part), torch.cat(hit_normal)
        t_best.scatter_reduce_(0, hit_ray, hit_t, "amin")
        won = hit_t == t_best[hit_ray]
        ids = torch.arange(1, len(hit_t) + 1, device=device)
        winner.scatter_reduce_(0, hit_ray[won], ids[won], "amax")
    on_part = winner > 0
    part_of = torch.zeros_like(winner)
    normal = torch.zeros(batch * hw, 3, device=device)
    normal[:, 2] = 1.0  # the ground's
    if on_part.any():
        hits = winner[on_part] - 1
        part_of[on_part] = hit_part[hits]
        normal[on_part] = _normalise(_rotate(parts.rotation[hit_part[hits]], hit_normal[hits]))
    seen = torch.isfinite(t_best)
    on_ground = seen & ~on_part

    # per-pixel surface attributes: objects from their part's owner, ground from the scene
    light_dir = f32([s.light.direction / np.linalg.norm(s.light.direction) for s in scenes])
    owner = torch.where(on_part, parts.owner[part_of] if len(parts.kind) else part_of, torch.zeros_like(part_of))
    table = _object_table(scenes, device)  # [B, 1 + max objects, ...]
    slot = ray_scene * table["stride"] + owner  # slot 0 of each scene: the ground
    base = table["rgb"][slot]
    material = table["material"][slot]
    texture = table["texture"][slot]
    semantic = torch.where(seen, table["semantic"][slot], torch.full_like(owner, SKY))
    semantic = torch.where(on_ground, torch.full_like(owner, GROUND), semantic)

    t_safe = torch.where(seen, t_best, torch.zeros_like(t_best))
    points = origins + t_safe[:, None] * dirs
    inside = points - 1e-4 * normal  # just under the surface: cells do not flicker on faces at cell borders
    cells = torch.floor(inside / texture[:, 1:2]).long()
    cells[on_ground, 2] = 0  # the ground's cells are squares of the plane
    shade = 1.0 + texture[:, 0] * (2.0 * _hash01(cells) - 1.0)
    albedo = base * shade[:, None]

    visible = torch.ones(batch * hw, device=device)
    if shadows and len(parts.kind):
        visible = _shadow_visibility(parts, points, normal, t_safe, seen, ray_scene, light_dir, device)

    sun = f32([s.light.colour for s in scenes])[ray_scene]
    amb_sky, amb_ground = f32([s.light.ambient_sky for s in scenes]), f32([s.light.ambient_ground for s in scenes])
    up = (0.5 + 0.5 * normal[:, 2])[:, None]
    ambient = amb_sky[ray_scene] * up + amb_ground[ray_scene] * (1.0 - up)
    lit = light_dir[ray_scene]
    n_dot_l = (normal * lit).sum(1).clamp(min=0) * visible
    diffuse = albedo * material[:, 0:1] * (ambient + sun * n_dot_l[:, None])
    half = _normalise(lit - dirs)
    n_dot_h = (normal * half).sum(1).clamp(min=0)
    spec = material[:, 1] * torch.pow(n_dot_h, material[:, 2]) * (n_dot_l > 0)
    spec_colour = (1.0 - material[:, 3:4]) + material[:, 3:4] * base
    surface = diffuse + spec[:, None] * spec_colour * sun

    horizon = f32([srgb_to_linear(s.sky_horizon) for s in scenes])[ray_scene]
    zenith = f32([srgb_to_linear(s.sky_zenith) for s in scenes])[ray_scene]
    rise = torch.sqrt(dirs[:, 2].clamp(min=0))[:, None]
    glow = torch.pow((dirs * lit).sum(1).clamp(min=0), 64.0)[:, None] * 0.4 * sun
    sky = horizon * (1.0 - rise) + zenith * rise + glow
    radiance = torch.where(seen[:, None], surface, sky)
    if any(s.fog_density > 0 for s in scenes):  # Koschmieder: attenuate along the ray, add airlight
        beta = f32([s.fog_density for s in scenes])[ray_scene]
        airlight = f32([srgb_to_linear(s.fog_rgb) for s in scenes])[ray_scene]
        transmit = torch.where(seen, torch.exp(-beta * t_safe), (beta <= 0).float())[:, None]
        radiance = radiance * transmit + airlight * (1.0 - transmit)

    exposure = f32([s.exposure for s in scenes])[ray_scene][:, None]
    depth = torch.where(seen, t_best * d_cam[:, 2], torch.full_like(t_best, math.inf))
    normal_cam = torch.where(seen[:, None], _rotate(cam_r[ray_scene], normal), torch.zeros_like(normal))
    shape = (batch, height, width)
    return Rendering(
        rgb=tonemap(radiance, exposure).view(*shape, 3), radiance=radiance.view(*shape, 3), depth=depth.view(shape),
        normal=normal_cam.view(*shape, 3), semantic=semantic.view(shape), instance=owner.view(shape),
        intrinsics=torch.tensor(k64), extrinsics=torch.tensor(np.stack([s.camera.extrinsics for s in scenes])),
    )  # fmt: skip


def _object_table(scenes: Sequence[Scene], device: torch.device) -> dict:
    """Per (scene, slot) attributes: slot 0 is the scene's ground, slot k its object k."""
    stride = 1 + max(len(s.objects) for s in scenes)
    rgb = np.zeros((len(scenes), stride, 3))
    material = np.zeros((len(scenes), stride, 4))
    texture = np.tile(np.array([0.0, 1.0]), (len(scenes), stride, 1))
    semantic = np.zeros((len(scenes), stride), dtype=np.int64)
    for b, scene in enumerate(scenes):
        rgb[b, 0] = srgb_to_linear(scene.ground_rgb)
        material[b, 0] = [1.0, 0.02, 8.0, 0.0]
        texture[b, 0] = scene.ground_texture
        semantic[b, 0] = GROUND
        for j, obj in enumerate(scene.objects, start=1):
            m = MATERIALS[obj.material]
            rgb[b, j] = srgb_to_linear(obj.rgb)
            material[b, j] = [m.diffuse, m.specular, m.shininess, m.metallic]
            texture[b, j] = obj.texture
            semantic[b, j] = obj.semantic

    def flat(a, dtype=torch.float32):
        return torch.tensor(a.reshape(len(scenes) * stride, *a.shape[2:]), dtype=dtype, device=device)

    return {"stride": stride, "rgb": flat(rgb), "material": flat(material), "texture": flat(texture),
            "semantic": flat(semantic, torch.long)}  # fmt: skip


def _shadow_visibility(parts: _Parts, points, normal, t, seen, ray_scene, light_dir, device) -> torch.Tensor:
    """1 where the sun is visible from the surface point, 0 where a part blocks it (sky pixels: 1)."""
    visible = torch.ones(len(points), device=device)
    corners = _corners(parts)
    centre = corners.mean(1)
    radius = torch.linalg.vector_norm(corners - centre[:, None], dim=-1).max(1).values
    pixels = torch.nonzero(seen).squeeze(1)
    if pixels.numel() == 0:
        return visible
    origin = points[pixels] + (1e-3 + 2e-4 * t[pixels])[:, None] * normal[pixels]
    lit = light_dir[ray_scene[pixels]]
    facing = (normal[pixels] * lit).sum(1) > 0  # surfaces turned away are dark anyway
    scene_of = ray_scene[pixels]
    for b in torch.unique(parts.scene).tolist():
        mine = torch.nonzero((scene_of == b) & facing).squeeze(1)
        cand = torch.nonzero(parts.scene == b).squeeze(1)
        if mine.numel() == 0:
            continue
        step = max(1, PAIR_CHUNK // max(1, cand.numel()))
        for s in range(0, mine.numel(), step):
            rows = mine[s : s + step]
            w = centre[cand][None] - origin[rows][:, None]  # [R, C, 3]
            along = (w * lit[rows][:, None]).sum(-1)
            dist2 = (w * w).sum(-1) - along * along
            near = (dist2 <= radius[cand][None] ** 2) & (along > -radius[cand][None])
            r_idx, c_idx = torch.nonzero(near, as_tuple=True)
            if r_idx.numel() == 0:
                continue
            pair_part, pix = cand[c_idx], rows[r_idx]
            t_hit, _ = _intersect_pairs(parts, pair_part, origin[pix], lit[pix])
            blocked = pix[torch.isfinite(t_hit)]
            visible[pixels[blocked]] = 0.0
    return visible
