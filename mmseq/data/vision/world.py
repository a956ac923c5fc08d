"""Scenes of the synthetic vision world: objects with colour and material on a ground plane, a sky, a sun, a camera.

A :class:`Scene` is everything the renderer needs and nothing product-specific: a list of :class:`SceneObject`
(a :class:`~mmseq.data.vision.objects.Shape` posed by a yaw and a position, with an sRGB colour, a material and a
semantic class), the ground's colour and tile texture, the sky's gradient, a directional :class:`Light` and a
pinhole :class:`Camera`. The captioned images, the point clouds' partial scans and the RGB-D scenes all build
scenes through this module, so colours, materials and classes mean the same thing in each.

Conventions: world z is up and the ground is the plane ``z = 0``; the camera follows OpenCV (x right, y down,
z forward) with intrinsics ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` in pixels, pixel centres at half-integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mmseq.data.vision.objects import CLASS_NAMES, Part, Shape, box_part, make_shape, rotation_z
from mmseq.errors import ConfigError, unknown_choice

# Semantic classes every renderer output uses: the stuff first, then the object classes in CLASS_NAMES order.
STUFF_CLASSES = ("sky", "ground", "wall")
SEMANTIC_CLASSES: tuple[str, ...] = STUFF_CLASSES + CLASS_NAMES
SKY, GROUND, WALL = 0, 1, 2

# Named colours (sRGB, 0-255). Instances jitter each channel a little, never far enough to change the name.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 35), "orange": (235, 125, 25), "yellow": (230, 205, 40), "green": (45, 160, 60),
    "cyan": (40, 195, 205), "blue": (35, 75, 205), "purple": (125, 50, 175), "pink": (240, 130, 180),
    "brown": (125, 80, 40), "white": (235, 235, 230), "gray": (130, 130, 130), "black": (30, 30, 32),
}  # fmt: skip
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)


@dataclass(frozen=True)
class Material:
    """Blinn-Phong surface: ``diffuse`` albedo scale, ``specular`` strength, ``shininess`` exponent, and
    ``metallic`` (0: white highlights, 1: highlights tinted by the colour)."""

    diffuse: float
    specular: float
    shininess: float
    metallic: float


MATERIALS: dict[str, Material] = {
    "matte": Material(diffuse=1.0, specular=0.04, shininess=8.0, metallic=0.0),
    "shiny": Material(diffuse=0.9, specular=0.6, shininess=60.0, metallic=0.0),
    "metal": Material(diffuse=0.45, specular=1.0, shininess=90.0, metallic=1.0),
}
MATERIAL_NAMES: tuple[str, ...] = tuple(MATERIALS)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] to linear radiance (the exact piecewise sRGB curve)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def random_rgb(rng: np.random.Generator, name: str, jitter: float = 0.05) -> np.ndarray:
    """An sRGB triple in [0, 1] near the named colour (each channel moved by at most ``jitter``)."""
    if name not in COLOURS:
        raise ConfigError(unknown_choice("colour", name, COLOUR_NAMES))
    base = np.array(COLOURS[name], dtype=np.float64) / 255.0
    return np.clip(base + rng.uniform(-jitter, jitter, 3), 0.0, 1.0)


@dataclass
class SceneObject:
    """One object (or a wall) in a scene.

    Attributes:
        shape: Geometry in the object frame.
        position: ``[3]`` world position of the object frame's origin (the centre of its base).
        yaw: Rotation about the vertical axis, radians.
        rgb: sRGB colour in [0, 1].
        material: One of :data:`MATERIAL_NAMES`.
        colour: The colour's name (``""`` for stuff such as walls).
        texture: ``(amplitude, tile)``: brightness varies by up to ``amplitude`` between cubic cells of side
            ``tile`` metres (0: plain).
    """

    shape: Shape
    position: np.ndarray
    yaw: float
    rgb: np.ndarray
    material: str = "matte"
    colour: str = ""
    texture: tuple[float, float] = (0.0, 1.0)

    @property
    def semantic(self) -> int:
        """Index into :data:`SEMANTIC_CLASSES`."""
        return SEMANTIC_CLASSES.index(self.shape.cls)

    def world_parts(self) -> list[Part]:
        """The shape's parts posed in the world frame."""
        rotation = rotation_z(self.yaw)
        return [p.posed(rotation, np.asarray(self.position, dtype=np.float64)) for p in self.shape.parts]


@dataclass
class Light:
    """A sun and sky: ``direction`` points towards the sun; colours are linear RGB radiance."""

    direction: np.ndarray
    colour: np.ndarray = field(default_factory=lambda: np.array([2.2, 2.1, 2.0]))
    ambient_sky: np.ndarray = field(default_factory=lambda: np.array([0.30, 0.34, 0.42]))
    ambient_ground: np.ndarray = field(default_factory=lambda: np.array([0.12, 0.11, 0.10]))


def random_light(rng: np.random.Generator, elevation: tuple[float, float] = (30.0, 70.0)) -> Light:
    """A sun at a random azimuth and an elevation (degrees) drawn from ``elevation``, slightly varied in colour."""
    az = rng.uniform(0, 2 * math.pi)
    el = math.radians(rng.uniform(*elevation))
    direction = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    warmth = rng.uniform(-0.1, 0.1)
    strength = rng.uniform(1.9, 2.5)
    colour = strength * np.array([1.0 + warmth, 0.97, 0.92 - warmth])
    return Light(direction, colour, rng.uniform(0.85, 1.15) * np.array([0.30, 0.34, 0.42]))


@dataclass
class Camera:
    """A pinhole camera (OpenCV axes).

    Attributes:
        position: ``[3]`` centre of projection in the world.
        rotation: ``[3, 3]`` world-to-camera rotation (rows: the camera's x, y, z axes in world coordinates).
        fx, fy, cx, cy: Intrinsics in pixels.
        width, height: Image size in pixels.
    """

    position: np.ndarray
    rotation: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def look_at(cls, eye, target, fov_y: float, width: int, height: int) -> Camera:
        """A camera at ``eye`` looking at ``target`` with world z up and a vertical field of view in degrees."""
        eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
        forward = target - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-9:
            raise ConfigError("a camera cannot look straight up or down (its image x axis is undefined)")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        f = 0.5 * height / math.tan(math.radians(fov_y) / 2)
        return cls(eye, np.stack([right, down, forward]), f, f, width / 2, height / 2, width, height)

    @property
    def intrinsics(self) -> np.ndarray:
        """``[3, 3]`` matrix ``K``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def extrinsics(self) -> np.ndarray:
        """``[4, 4]`` world-to-camera transform."""
        out = np.eye(4)
        out[:3, :3] = self.rotation
        out[:3, 3] = -self.rotation @ self.position
        return out

    def project(self, points: np.ndarray) -> np.ndarray:
        """``[N, 3]`` world points to ``[N, 3]`` (u, v, depth) with u, v in pixels."""
        cam = (np.asarray(points) - self.position) @ self.rotation.T
        z = cam[:, 2]
        return np.stack([self.fx * cam[:, 0] / z + self.cx, self.fy * cam[:, 1] / z + self.cy, z], axis=1)


@dataclass
class Scene:
    """Everything the renderer reads.

    Attributes:
        objects: Objects and walls; an object's instance id is its index + 1.
        camera: The viewpoint.
        light: Sun and sky light.
        ground_rgb: sRGB colour of the ground plane ``z = 0``.
        ground_texture: ``(amplitude, tile)`` as :attr:`SceneObject.texture`.
        sky_horizon, sky_zenith: sRGB colours of the sky gradient.
        exposure: Multiplies the radiance before tone mapping.
        fog_density: Extinction coefficient ``beta`` (1/m) of a homogeneous fog (0: none). A surface at distance
            ``s`` along the ray keeps ``T = exp(-beta s)`` of its radiance and the fog adds ``(1 - T)`` of
            ``fog_rgb`` (Koschmieder's law); the sky is replaced by the fog colour. The meteorological visibility
            (contrast 5%) is ``3.0 / beta``.
        fog_rgb: sRGB colour of the fog's airlight.
    """

    objects: list[SceneObject]
    camera: Camera
    light: Light
    ground_rgb: np.ndarray = field(default_factory=lambda: np.array([0.50, 0.48, 0.45]))
    ground_texture: tuple[float, float] = (0.06, 0.5)
    sky_horizon: np.ndarray = field(default_factory=lambda: np.array([0.78, 0.84, 0.92]))
    sky_zenith: np.ndarray = field(default_factory=lambda: np.array([0.35, 0.55, 0.85]))
    exposure: float = 1.0
    fog_density: float = 0.0
    fog_rgb: np.ndarray = field(default_factory=lambda: np.array([0.78, 0.79, 0.80]))


def random_object(rng: np.random.Generator, cls: str, size: float, colour: str | None = None,
                  material: str | None = None) -> SceneObject:  # fmt: skip
    """An object of class ``cls`` at the origin with a random yaw, and a random colour/material unless given."""
    shape = make_shape(cls, rng, size)
    colour = colour if colour is not None else COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
    material = material if material is not None else MATERIAL_NAMES[int(rng.integers(len(MATERIAL_NAMES)))]
    if material not in MATERIALS:
        raise ConfigError(unknown_choice("material", material, MATERIAL_NAMES))
    return SceneObject(shape, np.zeros(3), float(rng.uniform(0, 2 * math.pi)), random_rgb(rng, colour), material,
                       colour)  # fmt: skip


def place_objects(rng: np.random.Generator, objects: list[SceneObject], region: tuple[float, float, float, float],
                  gap: float = 0.05, tries: int = 200) -> bool:  # fmt: skip
    """Set the objects' ground positions so that their footprint circles do not overlap.

    Args:
        rng: Source of the positions.
        objects: Placed in order (larger first is easier); their ``position`` is overwritten.
        region: ``(x_min, x_max, y_min, y_max)`` that every footprint centre stays inside.
        gap: Least free distance between two footprints (metres).
        tries: Rejection-sampling attempts per object.

    Returns:
        Whether every object found a place (``False`` leaves the last ones where they were).
    """
    placed: list[tuple[float, float, float]] = []
    x0, x1, y0, y1 = region
    for obj in objects:
        radius = obj.shape.footprint()
        for _ in range(tries):
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            if all(math.hypot(x - px, y - py) >= radius + pr + gap for px, py, pr in placed):
                obj.position = np.array([x, y, 0.0])
                placed.append((x, y, radius))
                break
        else:
            return False
    return True


def wall(lo, hi, rgb: np.ndarray, texture: tuple[float, float] = (0.08, 0.6)) -> SceneObject:
    """An axis-aligned box of class ``wall`` between the world corners ``lo`` and ``hi`` (a building, a fence)."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    part = box_part(lo, hi)
    return SceneObject(Shape("wall", [part], float((hi - lo).max())), np.zeros(3), 0.0, np.asarray(rgb), "matte",
                       "", texture)  # fmt: skip


__all__ = ["COLOURS", "COLOUR_NAMES", "Camera", "GROUND", "Light", "MATERIALS", "MATERIAL_NAMES", "Material",
           "SEMANTIC_CLASSES", "SKY", "STUFF_CLASSES", "Scene", "SceneObject", "WALL", "place_objects",
           "random_light", "random_object", "random_rgb", "srgb_to_linear", "wall"]  # fmt: skip
