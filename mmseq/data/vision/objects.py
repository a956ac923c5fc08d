"""The object classes of the synthetic vision world: primitive parts with one analytic description each.

Every object is a union of **parts**. A part is one of five primitive solids, each described analytically so that the
renderer, the surface sampler and the tests all read the same geometry:

========  ===============================================  ==========================================
kind      parameters (local frame, z up)                    used by
========  ===============================================  ==========================================
sphere    radius ``r``, centred at the origin                sphere, capsule ends
convex    the convex hull of a few vertices (half-spaces)   cube, pyramid, prism, stairs, chair, table
tube      radial centre ``c``, radial half-width ``w``,     cylinder (``c = 0``), ring (``c > 0``),
          half-height ``h``, axis z, centred                 capsule body, round legs
cone      base radius ``r``, height ``h``, base on z = 0    cone
torus     major radius ``R``, minor radius ``r``, axis z    torus
========  ===============================================  ==========================================

For each kind this module gives a signed distance function (:func:`part_sdf`), a ray intersection
(:func:`part_intersect`, closed-form except for the torus, which is sphere-traced on its exact distance), an axis
aligned bound and a ``trimesh`` mesh (:func:`part_mesh`) for surface sampling. The geometry functions are torch,
vectorised over rows that each carry their own packed parameters (:func:`Part.packed`), and work in float32 (the
renderer) or float64 (the surface sampler).

An object's class builder (:data:`CLASS_BUILDERS`) draws random proportions and returns parts in the object frame,
base on the ground plane ``z = 0`` and centred on the z axis; :func:`make_shape` scales it so that its largest
extent equals the requested size. A class is therefore the same shape family in the captioned images, the point
clouds and the RGB-D scenes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from mmseq.errors import ConfigError, unknown_choice

PART_KINDS = ("sphere", "convex", "tube", "cone", "torus")
MAX_PLANES = 6  # convex parts have at most this many faces (a box); fewer are padded with planes far away
PARAM_SIZE = 4 * MAX_PLANES
_FAR = 1.0e6  # offset of a padding plane: never the active face
_EPS = 1e-12


def _rotation_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_z(angle: float) -> np.ndarray:
    """The 3x3 rotation by ``angle`` radians about the vertical (z) axis."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _convex_planes(vertices: np.ndarray) -> np.ndarray:
    """Outward face planes ``(nx, ny, nz, d)`` (inside: ``n.x <= d``) of the convex hull of ``vertices``."""
    import trimesh

    hull = trimesh.convex.convex_hull(vertices)
    normals = np.asarray(hull.face_normals)
    offsets = np.einsum("ij,ij->i", normals, hull.triangles[:, 0])
    planes = np.round(np.concatenate([normals, offsets[:, None]], axis=1), 9)
    planes = np.unique(planes, axis=0)
    if len(planes) > MAX_PLANES:
        raise ConfigError(f"a convex part has {len(planes)} faces; at most {MAX_PLANES} are supported")
    return planes


@dataclass
class Part:
    """One primitive solid, posed in its parent frame (``parent = rotation @ local + translation``).

    Attributes:
        kind: One of :data:`PART_KINDS`.
        dims: The kind's parameters (see the module table); empty for ``convex``.
        vertices: ``[V, 3]`` hull vertices of a ``convex`` part (local frame), else ``None``.
        rotation: ``[3, 3]`` rotation into the parent frame.
        translation: ``[3]`` position in the parent frame.
        planes: ``[F, 4]`` outward face planes ``(n, d)`` of a ``convex`` part (inside: ``n.x <= d``), derived
            from ``vertices`` when not given.
    """

    kind: str
    dims: tuple[float, ...] = ()
    vertices: np.ndarray | None = None
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    planes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in PART_KINDS:
            raise ConfigError(unknown_choice("part kind", self.kind, PART_KINDS))
        if self.kind == "convex" and self.planes is None:
            self.planes = _convex_planes(np.asarray(self.vertices, dtype=np.float64))

    def packed(self) -> np.ndarray:
        """The ``[PARAM_SIZE]`` parameter row the geometry functions read."""
        row = np.zeros(PARAM_SIZE)
        if self.kind == "convex":
            planes = np.tile(np.array([0.0, 0.0, 1.0, _FAR]), (MAX_PLANES, 1))
            planes[: len(self.planes)] = self.planes
            row[:] = planes.reshape(-1)
        else:
            row[: len(self.dims)] = self.dims
        return row

    def local_bounds(self) -> np.ndarray:
        """``[2, 3]`` exact axis-aligned bounds (min, max) in the part's own frame."""
        if self.kind == "convex":
            return np.stack([self.vertices.min(0), self.vertices.max(0)])
        if self.kind == "sphere":
            (r,) = self.dims
            return np.array([[-r, -r, -r], [r, r, r]])
        if self.kind == "tube":
            c, w, h = self.dims
            return np.array([[-(c + w), -(c + w), -h], [c + w, c + w, h]])
        if self.kind == "cone":
            r, h = self.dims
            return np.array([[-r, -r, 0.0], [r, r, h]])
        big, small = self.dims
        return np.array([[-(big + small), -(big + small), -small], [big + small, big + small, small]])

    def bounds(self) -> np.ndarray:
        """``[2, 3]`` axis-aligned bounds in the parent frame (exact for the 90-degree turns builders use)."""
        lo, hi = self.local_bounds()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        placed = corners @ self.rotation.T + self.translation
        return np.stack([placed.min(0), placed.max(0)])

    def scaled(self, factor: float) -> Part:
        """The same part with every length (and its position) multiplied by ``factor``."""
        planes = None if self.planes is None else self.planes * np.array([1.0, 1.0, 1.0, factor])
        return Part(self.kind, tuple(d * factor for d in self.dims),
                    None if self.vertices is None else self.vertices * factor,
                    self.rotation.copy(), self.translation * factor, planes)  # fmt: skip

    def posed(self, rotation: np.ndarray, translation: np.ndarray) -> Part:
        """The part moved into a grandparent frame: ``grandparent = rotation @ parent + translation``."""
        return Part(self.kind, self.dims, self.vertices, rotation @ self.rotation,
                    rotation @ self.translation + translation, self.planes)  # fmt: skip


# ----------------------------------------------------------------------------------------- signed distances
def _radial(p: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(p[..., 0] * p[..., 0] + p[..., 1] * p[..., 1])


def _segment_distance(px, pz, ax, az, bx, bz):
    """Distance in the (q, z) half-plane from points to the segment a-b."""
    ex, ez = bx - ax, bz - az
    s = ((px - ax) * ex + (pz - az) * ez) / (ex * ex + ez * ez)
    s = s.clamp(0.0, 1.0)
    dx, dz = px - ax - s * ex, pz - az - s * ez
    return torch.sqrt(dx * dx + dz * dz)


def part_sdf(kind: str, params: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside) of points to parts of one kind, in the parts' local frames.

    Exact for every kind except ``convex``, where the largest plane distance is exact inside and on the surface
    and a lower bound outside (enough for inside tests and for sampling, which starts on the surface).

    Args:
        kind: One of :data:`PART_KINDS`.
        params: ``[N, PARAM_SIZE]`` packed parameters, one row per point.
        p: ``[N, 3]`` points.

    Returns:
        ``[N]`` signed distances.
    """
    if kind == "sphere":
        return torch.linalg.vector_norm(p, dim=-1) - params[:, 0]
    if kind == "convex":
        planes = params.view(-1, MAX_PLANES, 4)
        dist = (planes[..., 0] * p[:, None, 0] + planes[..., 1] * p[:, None, 1] + planes[..., 2] * p[:, None, 2]
                - planes[..., 3])  # fmt: skip
        return dist.max(dim=1).values
    if kind == "tube":
        c, w, h = params[:, 0], params[:, 1], params[:, 2]
        dq = (_radial(p) - c).abs() - w
        dz = p[:, 2].abs() - h
        outside = torch.sqrt(dq.clamp(min=0) ** 2 + dz.clamp(min=0) ** 2)
        return outside + torch.maximum(dq, dz).clamp(max=0)
    if kind == "cone":
        r, h = params[:, 0], params[:, 1]
        q, z = _radial(p), p[:, 2]
        zero = torch.zeros_like(q)
        to_base = _segment_distance(q, z, zero, zero, r, zero)
        to_side = _segment_distance(q, z, r, zero, zero, h)
        inside = (z >= 0) & (q * h <= r * (h - z))
        d = torch.minimum(to_base, to_side)
        return torch.where(inside, -d, d)
    if kind == "torus":
        big, small = params[:, 0], params[:, 1]
        dq = _radial(p) - big
        return torch.sqrt(dq * dq + p[:, 2] * p[:, 2]) - small
    raise ConfigError(unknown_choice("part kind", kind, PART_KINDS))


# --------------------------------------------------------------------------------------- ray intersections
def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # written out (not a reduction) so that every row's value is independent of the batch it is computed in
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _slab(o_z: torch.Tensor, d_z: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Ray parameter interval inside ``lo <= z <= hi`` (``(-inf, inf)`` or empty for rays parallel to it)."""
    inf = torch.full_like(o_z, math.inf)
    flat = d_z.abs() < _EPS
    safe = torch.where(flat, torch.ones_like(d_z), d_z)
    a, b = (lo - o_z) / safe, (hi - o_z) / safe
    t0, t1 = torch.minimum(a, b), torch.maximum(a, b)
    inside = (o_z >= lo) & (o_z <= hi)
    t0 = torch.where(flat, torch.where(inside, -inf, inf), t0)
    t1 = torch.where(flat, torch.where(inside, inf, -inf), t1)
    return t0, t1


def _infinite_cylinder(o: torch.Tensor, d: torch.Tensor, radius: torch.Tensor):
    """Ray parameter interval inside the infinite cylinder ``x^2 + y^2 <= radius^2``."""
    inf = torch.full_like(radius, math.inf)
    a = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] * o[:, 0] + o[:, 1] * o[:, 1] - radius * radius
    disc = b * b - a * c
    along = a < _EPS
    safe_a = torch.where(along, torch.ones_like(a), a)
    root = torch.sqrt(disc.clamp(min=0))
    t0, t1 = (-b - root) / safe_a, (-b + root) / safe_a
    miss = disc < 0
    t0 = torch.where(miss, inf, t0)
    t1 = torch.where(miss, -inf, t1)
    t0 = torch.where(along, torch.where(c <= 0, -inf, inf), t0)
    t1 = torch.where(along, torch.where(c <= 0, inf, -inf), t1)
    return t0, t1


def _intersect_sphere(params, o, d):
    r = params[:, 0]
    b = _dot(o, d)
    c = _dot(o, o) - r * r
    disc = b * b - c
    t = -b - torch.sqrt(disc.clamp(min=0))
    hit = (disc >= 0) & (t > 0)
    t = torch.where(hit, t, torch.full_like(t, math.inf))
    p = o + t.clamp(max=1e9)[:, None] * d
    return t, p / r[:, None]


def _intersect_convex(params, o, d):
    planes = params.view(-1, MAX_PLANES, 4)
    n = planes[..., :3]
    denom = n[..., 0] * d[:, None, 0] + n[..., 1] * d[:, None, 1] + n[..., 2] * d[:, None, 2]
    num = planes[..., 3] - (n[..., 0] * o[:, None, 0] + n[..., 1] * o[:, None, 1] + n[..., 2] * o[:, None, 2])
    parallel = denom.abs() < _EPS
    safe = torch.where(parallel, torch.ones_like(denom), denom)
    t = num / safe
    inf = torch.full_like(t, math.inf)
    enter = torch.where(denom < -_EPS, t, -inf)
    leave = torch.where(denom > _EPS, t, inf)
    t_in, face = enter.max(dim=1)
    t_out = leave.min(dim=1).values
    outside_parallel = (parallel & (num < 0)).any(dim=1)
    hit = (t_in <= t_out) & (t_in > 0) & ~outside_parallel
    t_hit = torch.where(hit, t_in, inf[:, 0])
    normal = torch.gather(n, 1, face[:, None, None].expand(-1, 1, 3))[:, 0]
    return t_hit, normal


def _intersect_tube(params, o, d):
    c, w, h = params[:, 0], params[:, 1], params[:, 2]
    inf = torch.full_like(c, math.inf)
    outer, inner = c + w, c - w
    c0, c1 = _infinite_cylinder(o, d, outer)
    z0, z1 = _slab(o[:, 2], d[:, 2], -h, h)
    t_in, t_out = torch.maximum(c0, z0), torch.minimum(c1, z1)
    by_side = c0 > z0
    holed = inner > 0
    s0, s1 = _infinite_cylinder(o, d, inner.clamp(min=0))
    s0 = torch.where(holed, s0, inf)
    s1 = torch.where(holed, s1, -inf)
    solid = t_in <= t_out
    in_hole = (s0 < t_in) & (t_in < s1)
    first = solid & (t_in > 0) & ~in_hole
    # entered into the hole: the first surface is the inner wall, where the ray leaves the hole
    origin_in_hole = (s0 < 0) & (0 < s1)
    second = solid & ~first & (in_hole | ((t_in <= 0) & origin_in_hole)) & (s1 < t_out) & (s1 > 0)
    t = torch.where(first, t_in, torch.where(second, s1, inf))
    p = o + t.clamp(max=1e9)[:, None] * d
    radial = torch.stack([p[:, 0], p[:, 1], torch.zeros_like(p[:, 0])], dim=1)
    radial = radial / torch.linalg.vector_norm(radial, dim=1, keepdim=True).clamp(min=1e-20)
    cap = torch.stack([torch.zeros_like(c), torch.zeros_like(c), -torch.sign(d[:, 2])], dim=1)
    normal = torch.where((first & by_side)[:, None], radial, cap)
    normal = torch.where(second[:, None], -radial, normal)
    return t, normal


def _intersect_cone(params, o, d):
    r, h = params[:, 0], params[:, 1]
    inf = torch.full_like(r, math.inf)
    k2 = (r / h) ** 2
    above = h - o[:, 2]
    a = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] - k2 * d[:, 2] * d[:, 2]
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1] + k2 * above * d[:, 2]
    c = o[:, 0] * o[:, 0] + o[:, 1] * o[:, 1] - k2 * above * above
    a = torch.where(a.abs() < _EPS, torch.full_like(a, _EPS), a)
    disc = b * b - a * c
    root = torch.sqrt(disc.clamp(min=0))
    r1, r2 = (-b - root) / a, (-b + root) / a
    lo, hi = torch.minimum(r1, r2), torch.maximum(r1, r2)
    z0, z1 = _slab(o[:, 2], d[:, 2], torch.zeros_like(h), h)
    positive = a > 0
    no_root = disc < 0
    # a > 0: inside the double cone on [lo, hi]; a < 0: on (-inf, lo] and [hi, inf); the slab keeps one nappe
    i0 = torch.where(positive, torch.maximum(lo, z0), z0)
    i1 = torch.where(positive, torch.minimum(hi, z1), torch.minimum(lo, z1))
    j0, j1 = torch.maximum(hi, z0), z1
    use_j = ~positive & (i0 > i1)
    t_in = torch.where(use_j, j0, i0)
    t_out = torch.where(use_j, j1, i1)
    by_cap = torch.where(use_j, z0 >= hi, torch.where(positive, z0 >= lo, torch.ones_like(positive)))
    # no real root: never inside when a > 0, always inside (the slab decides) when a < 0
    t_in = torch.where(no_root, torch.where(positive, inf, z0), t_in)
    t_out = torch.where(no_root, torch.where(positive, -inf, z1), t_out)
    by_cap = torch.where(no_root, torch.ones_like(by_cap), by_cap)
    hit = (t_in <= t_out) & (t_in > 0)
    t = torch.where(hit, t_in, inf)
    p = o + t.clamp(max=1e9)[:, None] * d
    side = torch.stack([p[:, 0], p[:, 1], k2 * (h - p[:, 2])], dim=1)
    side = side / torch.linalg.vector_norm(side, dim=1, keepdim=True).clamp(min=1e-20)
    cap = torch.stack([torch.zeros_like(r), torch.zeros_like(r), -torch.sign(d[:, 2])], dim=1)
    return t, torch.where(by_cap[:, None], cap, side)


def _intersect_torus(params, o, d, steps: int = 96):
    big, small = params[:, 0], params[:, 1]
    inf = torch.full_like(big, math.inf)
    b0, b1 = _infinite_cylinder(o, d, big + small)
    z0, z1 = _slab(o[:, 2], d[:, 2], -small, small)
    t_lo, t_hi = torch.maximum(b0, z0).clamp(min=0), torch.minimum(b1, z1)
    t = torch.where(t_lo <= t_hi, t_lo, inf)
    active = torch.nonzero(torch.isfinite(t)).squeeze(1)
    result = inf.clone()
    tolerance = 1e-5 * (big + small)
    for _ in range(steps):  # sphere tracing on the exact distance; finished rays drop out each step
        if active.numel() == 0:
            break
        ta = t[active]
        p = o[active] + ta[:, None] * d[active]
        dist = part_sdf("torus", params[active], p)
        done = dist < tolerance[active]
        result[active[done]] = ta[done]
        ta = ta + dist
        t[active] = ta
        keep = ~done & (ta <= t_hi[active])
        active = active[keep]
    p = o + result.clamp(max=1e9)[:, None] * d
    q = _radial(p).clamp(min=1e-20)
    centre = torch.stack([p[:, 0] * big / q, p[:, 1] * big / q, torch.zeros_like(q)], dim=1)
    normal = p - centre
    normal = normal / torch.linalg.vector_norm(normal, dim=1, keepdim=True).clamp(min=1e-20)
    return result, normal


_INTERSECT: dict[str, Callable] = {"sphere": _intersect_sphere, "convex": _intersect_convex,
                                   "tube": _intersect_tube, "cone": _intersect_cone,
                                   "torus": _intersect_torus}  # fmt: skip


def part_intersect(kind: str, params: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor):
    """First entry of rays into parts of one kind, in the parts' local frames.

    Rays that start inside a part do not hit it (cameras and shadow rays start outside every solid).

    Args:
        kind: One of :data:`PART_KINDS`.
        params: ``[N, PARAM_SIZE]`` packed parameters, one row per ray.
        origins: ``[N, 3]`` ray origins.
        directions: ``[N, 3]`` unit ray directions.

    Returns:
        ``(t, normal)``: ``[N]`` distances along the rays (``inf`` for a miss) and ``[N, 3]`` outward unit
        normals at the hits.
    """
    if kind not in _INTERSECT:
        raise ConfigError(unknown_choice("part kind", kind, PART_KINDS))
    return _INTERSECT[kind](params, origins, directions)


# ------------------------------------------------------------------------------------------------- meshes
def part_mesh(part: Part, sections: int = 64):
    """A ``trimesh.Trimesh`` of the part, posed in its parent frame; its vertices lie on the analytic surface."""
    import trimesh

    if part.kind == "sphere":
        subdivisions = max(3, round(math.log2(sections / 8)))  # 64 sections: 1280 faces
        mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=part.dims[0])
    elif part.kind == "convex":
        mesh = trimesh.convex.convex_hull(part.vertices)
    elif part.kind == "tube":
        c, w, h = part.dims
        if c == 0:
            mesh = trimesh.creation.cylinder(radius=w, height=2 * h, sections=sections)
        else:
            mesh = trimesh.creation.annulus(r_min=c - w, r_max=c + w, height=2 * h, sections=sections)
    elif part.kind == "cone":
        mesh = trimesh.creation.cone(radius=part.dims[0], height=part.dims[1], sections=sections)
    elif part.kind == "torus":
        mesh = trimesh.creation.torus(part.dims[0], part.dims[1], major_sections=sections,
                                      minor_sections=sections // 2)  # fmt: skip
    else:
        raise ConfigError(unknown_choice("part kind", part.kind, PART_KINDS))
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = part.rotation, part.translation
    return mesh.apply_transform(transform)


# ----------------------------------------------------------------------------------------- class builders
def box_part(lo, hi) -> Part:
    """An axis-aligned box between the corners ``lo`` and ``hi`` of its parent frame."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    centre = (lo + hi) / 2
    half = (hi - lo) / 2
    planes = np.concatenate([np.concatenate([np.eye(3), -np.eye(3)]), np.concatenate([half, half])[:, None]], 1)
    # the six faces in closed form, rounded and ordered as _convex_planes gives a hull's (no hull needed)
    return Part("convex", vertices=corners - centre, translation=centre, planes=np.unique(np.round(planes, 9), axis=0))


def _leg(round_legs: bool, x: float, y: float, half: float, height: float) -> Part:
    if round_legs:
        return Part("tube", (0.0, half, height / 2), translation=np.array([x, y, height / 2]))
    return box_part([x - half, y - half, 0.0], [x + half, y + half, height])


def _cube(rng):
    half = 1.0 + rng.uniform(-0.08, 0.08, 3)
    return [box_part(-half * [1, 1, 0], half * [1, 1, 2])]


def _sphere(rng):
    return [Part("sphere", (1.0,), translation=np.array([0.0, 0.0, 1.0]))]


def _cylinder(rng):
    h = rng.uniform(0.5, 1.6)
    return [Part("tube", (0.0, 1.0, h), translation=np.array([0.0, 0.0, h]))]


def _cone(rng):
    return [Part("cone", (1.0, rng.uniform(1.3, 2.6)))]


def _torus(rng):
    small = rng.uniform(0.22, 0.42)
    if rng.random() < 0.3:  # standing on its rim
        return [Part("torus", (1.0, small), rotation=_rotation_x(math.pi / 2),
                     translation=np.array([0.0, 0.0, 1.0 + small]))]  # fmt: skip
    return [Part("torus", (1.0, small), translation=np.array([0.0, 0.0, small]))]


def _pyramid(rng):
    h = rng.uniform(1.0, 1.9)
    base = [[x, y, 0.0] for x in (-1.0, 1.0) for y in (-1.0, 1.0)]
    return [Part("convex", vertices=np.array(base + [[0.0, 0.0, h]]))]


def _capsule(rng):
    half = rng.uniform(0.6, 1.5)
    if rng.random() < 0.5:  # upright
        return [Part("tube", (0.0, 1.0, half), translation=np.array([0.0, 0.0, 1.0 + half])),
                Part("sphere", (1.0,), translation=np.array([0.0, 0.0, 1.0])),
                Part("sphere", (1.0,), translation=np.array([0.0, 0.0, 1.0 + 2 * half]))]  # fmt: skip
    lying = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # axis along x
    return [Part("tube", (0.0, 1.0, half), rotation=lying, translation=np.array([0.0, 0.0, 1.0])),
            Part("sphere", (1.0,), translation=np.array([-half, 0.0, 1.0])),
            Part("sphere", (1.0,), translation=np.array([half, 0.0, 1.0]))]  # fmt: skip


def _ring(rng):
    inner, half = rng.uniform(0.55, 0.8), rng.uniform(0.1, 0.25)
    dims = ((1.0 + inner) / 2, (1.0 - inner) / 2, half)
    if rng.random() < 0.5:  # standing, like a wheel
        return [Part("tube", dims, rotation=_rotation_x(math.pi / 2), translation=np.array([0.0, 0.0, 1.0]))]
    return [Part("tube", dims, translation=np.array([0.0, 0.0, half]))]


def _prism(rng):
    half, height = rng.uniform(1.0, 2.0), rng.uniform(1.2, 2.0)
    ends = [[x, y, z] for x in (-half, half) for y, z in ((-1.0, 0.0), (1.0, 0.0), (0.0, height))]
    return [Part("convex", vertices=np.array(ends))]


def _stairs(rng):
    steps = int(rng.integers(3, 6))
    width, depth, rise = rng.uniform(1.5, 3.0), rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.5)
    y0 = -steps * depth / 2
    return [box_part([-width / 2, y0 + i * depth, 0.0], [width / 2, y0 + (i + 1) * depth, (i + 1) * rise])
            for i in range(steps)]  # fmt: skip


def _chair(rng):
    a, b = 1.0, rng.uniform(0.85, 1.15)
    seat, legs, back = rng.uniform(0.1, 0.2), rng.uniform(1.4, 2.0), rng.uniform(1.4, 2.4)
    leg, board = rng.uniform(0.07, 0.14), rng.uniform(0.06, 0.12)
    round_legs = bool(rng.random() < 0.4)
    parts = [_leg(round_legs, sx * (a - leg), sy * (b - leg), leg, legs) for sx in (-1, 1) for sy in (-1, 1)]
    parts.append(box_part([-a, -b, legs], [a, b, legs + 2 * seat]))
    parts.append(box_part([-a, b - 2 * board, legs + 2 * seat], [a, b, legs + 2 * seat + back]))
    return parts


def _table(rng):
    a, b = 1.0, rng.uniform(0.5, 1.0)
    top, legs, leg = rng.uniform(0.06, 0.14), rng.uniform(1.0, 1.6), rng.uniform(0.06, 0.12)
    inset = rng.uniform(0.0, 0.15)
    round_legs = bool(rng.random() < 0.5)
    parts = [_leg(round_legs, sx * (a - leg - inset), sy * (b - leg - inset), leg, legs)
             for sx in (-1, 1) for sy in (-1, 1)]  # fmt: skip
    parts.append(box_part([-a, -b, legs], [a, b, legs + 2 * top]))
    return parts


# name -> builder(rng) -> parts at an arbitrary scale, base on z = 0, centred on the z axis
CLASS_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "cube": _cube, "sphere": _sphere, "cylinder": _cylinder, "cone": _cone, "torus": _torus,
    "pyramid": _pyramid, "capsule": _capsule, "ring": _ring, "prism": _prism, "stairs": _stairs,
    "chair": _chair, "table": _table,
}  # fmt: skip
CLASS_NAMES: tuple[str, ...] = tuple(CLASS_BUILDERS)


@dataclass
class Shape:
    """The geometry of one object instance in its own frame (base on z = 0, centred on the z axis).

    Attributes:
        cls: Class name (one of :data:`CLASS_NAMES`).
        parts: The solids whose union is the object.
        size: Largest extent of the object's bounding box (metres).
    """

    cls: str
    parts: list[Part]
    size: float

    @property
    def class_id(self) -> int:
        return CLASS_NAMES.index(self.cls)

    def bounds(self) -> np.ndarray:
        """``[2, 3]`` axis-aligned bounds in the object frame."""
        boxes = np.stack([p.bounds() for p in self.parts])
        return np.stack([boxes[:, 0].min(0), boxes[:, 1].max(0)])

    def footprint(self) -> float:
        """Radius of the smallest circle about the z axis that holds the object's bounding box (for placement)."""
        lo, hi = self.bounds()
        return float(math.hypot(max(-lo[0], hi[0]), max(-lo[1], hi[1])))

    def meshes(self) -> list:
        """One ``trimesh`` mesh per part, in the object frame."""
        return [part_mesh(p) for p in self.parts]


def make_shape(cls: str, rng: np.random.Generator, size: float) -> Shape:
    """Draw one instance of a class with random proportions, scaled so that its largest extent is ``size``.

    Args:
        cls: Class name, one of :data:`CLASS_NAMES`.
        rng: Source of the proportions.
        size: Largest bounding-box extent in metres.

    Returns:
        The shape in its object frame.
    """
    if cls not in CLASS_BUILDERS:
        raise ConfigError(unknown_choice("object class", cls, CLASS_NAMES))
    parts = CLASS_BUILDERS[cls](rng)
    lo, hi = Shape(cls, parts, 1.0).bounds()
    # centre the footprint on the z axis, then scale the largest extent to `size`
    shift = np.array([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    factor = size / float((hi - lo).max())
    parts = [p.posed(np.eye(3), shift).scaled(factor) for p in parts]
    return Shape(cls, parts, float(size))


# ------------------------------------------------------------------------------------------ surface samples
def _local(part: Part, points: np.ndarray) -> np.ndarray:
    return (points - part.translation) @ part.rotation  # rows: rotation.T @ (p - t)


def _sdf_local(part: Part, local: np.ndarray) -> np.ndarray:
    params = torch.from_numpy(np.tile(part.packed(), (len(local), 1)))
    return part_sdf(part.kind, params, torch.from_numpy(local)).numpy()


def _gradient(part: Part, local: np.ndarray, step: float) -> np.ndarray:
    grads = []
    for axis in np.eye(3):
        grads.append(_sdf_local(part, local + step * axis) - _sdf_local(part, local - step * axis))
    g = np.stack(grads, axis=1)
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)


def sample_surface(shape: Shape, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points drawn uniformly (by area) from an object's outer surface, with outward normals.

    Points are drawn from the part meshes by area, moved onto the exact analytic surface of their part (two
    Newton steps on its signed distance), given the normalised gradient of that distance as normal, and dropped
    when they lie inside, or on a face shared with, another part of the union (the seat under a chair's legs, the
    risers between steps). What is left is uniform over the union's outer surface, in random order, so any
    prefix is itself a uniform sample.

    Args:
        shape: The object, in its own frame.
        count: Number of points.
        rng: Source of the samples.

    Returns:
        ``(points [count, 3], normals [count, 3], face_ids [count])``, float64 and int64; a face id indexes the
        faces of the part meshes concatenated in part order (as ModelNet's ``faceId`` indexes its mesh).
    """
    meshes = shape.meshes()
    triangles = np.concatenate([m.triangles for m in meshes])
    owner = np.concatenate([np.full(len(m.faces), i) for i, m in enumerate(meshes)])
    cumulative = np.cumsum(np.concatenate([m.area_faces for m in meshes]))
    tolerance = 1e-4 * shape.size
    kept_p, kept_n, kept_f, total = [], [], [], 0
    draw = int(count * 1.25) + 64
    while total < count:
        faces = np.minimum(np.searchsorted(cumulative, rng.random(draw) * cumulative[-1], side="right"),
                           len(cumulative) - 1)  # fmt: skip
        r1, r2 = np.sqrt(rng.random(draw)), rng.random(draw)
        tri = triangles[faces]
        points = ((1 - r1)[:, None] * tri[:, 0] + (r1 * (1 - r2))[:, None] * tri[:, 1]
                  + (r1 * r2)[:, None] * tri[:, 2])  # fmt: skip
        normals = np.zeros_like(points)
        keep = np.ones(draw, dtype=bool)
        for i, part in enumerate(shape.parts):
            mine = owner[faces] == i
            if not mine.any():
                continue
            local = _local(part, points[mine])
            for _ in range(2):  # Newton steps onto the analytic surface (exact already for flat faces)
                local = local - _sdf_local(part, local)[:, None] * _gradient(part, local, 1e-6 * shape.size)
            points[mine] = local @ part.rotation.T + part.translation
            normals[mine] = _gradient(part, local, 1e-6 * shape.size) @ part.rotation.T
        for j, other in enumerate(shape.parts):
            if len(shape.parts) == 1:
                break
            theirs = owner[faces] != j
            keep[theirs] &= _sdf_local(other, _local(other, points[theirs])) > tolerance
        kept_p.append(points[keep])
        kept_n.append(normals[keep])
        kept_f.append(faces[keep])
        total += int(keep.sum())
        draw = max(64, int((count - total) * 1.5) + 64)
    points, normals, face_ids = (np.concatenate(a)[:count] for a in (kept_p, kept_n, kept_f))
    return points, normals, face_ids.astype(np.int64)
